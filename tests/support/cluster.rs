//! The local cluster: clients, one namespace per test, the CRD, the pinned
//! command-line tools, and small object helpers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, CustomResourceExt, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

use model_operator::api::ModelDeployment;

use super::wait_for;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$KUBECONFIG` when set, else the one `make cluster-up` writes.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local/kubeconfig"))
}

pub async fn client() -> Client {
    client_from(&kubeconfig_path()).await
}

/// A client with the identity of the given kubeconfig's current context.
pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| {
        panic!(
            "no kubeconfig at {}: start the local cluster with `make cluster-up` ({e})",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client from kubeconfig")
}

/// A fresh namespace, deleted (without waiting) when the test ends. A failed
/// test's namespace is deleted too; its objects are printed by `wait_for`.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        Self::with_labels(client, prefix, serde_json::json!({})).await
    }

    pub async fn with_labels(client: &Client, prefix: &str, labels: serde_json::Value) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut prefix: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        prefix.truncate(40);
        let name = format!(
            "{prefix}-{:x}{n:x}",
            (nanos ^ std::process::id()) & 0xffffff
        )
        .to_lowercase();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_NAMESPACES").is_some() {
            eprintln!("keeping namespace {}", self.name);
            return;
        }
        // Drop cannot await; kubectl returns at once with --wait=false.
        let _ = kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// Installs (or updates) the CRD from the code, and waits until established.
pub async fn ensure_crd(client: &Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = model_operator::api::crd();
    let name = crd.metadata.name.clone().expect("crd name");
    api.patch(
        &name,
        &PatchParams::apply("model-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    wait_for(
        &api,
        &name,
        "be established",
        Duration::from_secs(30),
        |crd| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
    )
    .await;
}

/// Runs the real kubectl (the pinned one) against the test cluster.
pub fn kubectl(args: &[&str]) -> Output {
    run_tool("kubectl", args)
}

/// Runs a pinned tool from .local/bin (else from PATH) against the test
/// cluster.
pub fn run_tool(name: &str, args: &[&str]) -> Output {
    let bin = repo_root().join(".local/bin").join(name);
    Command::new(if bin.exists() {
        bin
    } else {
        PathBuf::from(name)
    })
    .args(args)
    .env("KUBECONFIG", kubeconfig_path())
    .output()
    .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// Runs this build's `kubectl model` plugin in namespace `ns` against the
/// test cluster, and requires it to succeed.
pub fn kubectl_model(ns: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-model"))
        .args(["-n", ns])
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("run kubectl-model");
    assert!(
        out.status.success(),
        "kubectl model {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A port nothing listens on right now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Deletes an object, ignoring "not found".
pub async fn delete<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("delete {name}: {e}"),
    }
}

/// A shipped example manifest passes the API server's validation (a
/// server-side dry run in a namespace of its own).
pub async fn assert_example_accepted(prefix: &str, example: &str) {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let file = repo_root().join(example);
    let out = kubectl(&[
        "-n",
        &ns.name,
        "apply",
        "--dry-run=server",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
