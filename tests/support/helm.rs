//! The Helm chart in charts/model-operator, through the pinned helm binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde::Deserialize;

use super::repo_root;

pub fn chart() -> PathBuf {
    repo_root().join("charts/model-operator")
}

/// The API server version helm renders for when it does not ask a cluster
/// (our helm is built without version ldflags).
pub const KUBE_VERSION: &str = "1.36.3";

/// Runs helm against the test cluster.
pub fn helm(args: &[&str]) -> Output {
    super::run_tool("helm", args)
}

/// Output of a command that must succeed; its stderr otherwise.
pub fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints text")
}

/// `helm template` of a chart with `--set` values.
pub fn template(chart: &Path, namespace: &str, sets: &[&str]) -> Output {
    let chart = chart.to_string_lossy();
    let mut args = vec![
        "template",
        "model-operator",
        &chart,
        "-n",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

/// The rendered objects, as JSON values.
pub fn objects(manifest: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(manifest)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).expect("YAML is JSON"))
        .collect()
}

/// A release installed for one test, uninstalled when dropped.
pub struct Release {
    pub name: String,
    pub namespace: String,
    uninstalled: bool,
}

impl Release {
    /// `helm install` into an existing namespace; the operator pods it may
    /// start are kwok's simulated pods, no process runs.
    pub fn install(name: &str, namespace: &str, chart: &Path, extra: &[&str]) -> Self {
        let chart = chart.to_string_lossy();
        let mut args = vec!["install", name, &chart, "-n", namespace];
        args.extend(extra);
        ok("helm install", helm(&args));
        Self {
            name: name.into(),
            namespace: namespace.into(),
            uninstalled: false,
        }
    }

    /// The chart's ServiceAccount, RBAC and admission policy only (no
    /// operator pod; no CRD: the tests install it from the code), as
    /// release `model-operator` in `namespace`, with these `--set` values.
    pub fn identity(namespace: &str, sets: &[&str]) -> Self {
        let mut args = vec!["--set", "replicas=0", "--set", "crds.install=false"];
        for set in sets {
            args.extend(["--set", set]);
        }
        Self::install("model-operator", namespace, &chart(), &args)
    }

    pub fn upgrade(&self, chart: &Path, extra: &[&str]) -> String {
        let chart = chart.to_string_lossy();
        let mut args = vec!["upgrade", &self.name, &chart, "-n", &self.namespace];
        args.extend(extra);
        ok("helm upgrade", helm(&args))
    }

    pub fn uninstall(mut self) -> String {
        self.uninstalled = true;
        ok(
            "helm uninstall",
            helm(&["uninstall", &self.name, "-n", &self.namespace, "--wait"]),
        )
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.uninstalled {
            return;
        }
        // Its cluster-scoped objects (ClusterRole, binding) outlive the
        // test namespace otherwise.
        let _ = helm(&["uninstall", &self.name, "-n", &self.namespace]);
    }
}
