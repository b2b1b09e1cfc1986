//! Identities other than the admin's: ServiceAccount tokens in kubeconfig
//! files, for the operator (the Helm chart's RBAC) and for people with few
//! rights (the kubectl plugin's forbidden path).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{kubeconfig_path, kubectl, repo_root};

/// Where hack/operator-identity.sh installs the chart's ServiceAccount and
/// RBAC, and the release's (and ServiceAccount's) name.
pub const E2E_NAMESPACE: &str = "model-operator-e2e";
pub const E2E_RELEASE: &str = "model-operator";

/// hack/operator-identity.sh asks for 24-hour tokens; an hour of margin.
const TOKEN_LIFETIME: Duration = Duration::from_secs(23 * 3600);

/// Whether a kubeconfig hack/operator-identity.sh wrote can still be used:
/// its token has not expired and the cluster was not recreated since (a new
/// cluster writes a new admin kubeconfig, with a new CA and signing key).
pub fn usable(path: &Path) -> Result<(), String> {
    let written = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{} cannot be read ({e})", path.display()))?;
    let age = written.elapsed().unwrap_or_default();
    if age > TOKEN_LIFETIME {
        return Err(format!(
            "{} is {}h old and its token has expired",
            path.display(),
            age.as_secs() / 3600
        ));
    }
    let cluster = std::fs::metadata(kubeconfig_path()).and_then(|m| m.modified());
    if cluster.is_ok_and(|c| c > written) {
        return Err(format!(
            "{} is older than the cluster's kubeconfig",
            path.display()
        ));
    }
    // A second local cluster (CLUSTER_NAME) has its own server: the token of
    // the default cluster's ServiceAccount means nothing there.
    let server = |config: &Path| {
        std::fs::read_to_string(config).ok().and_then(|text| {
            text.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("server:")
                        .map(|s| s.trim().to_string())
                })
                .or_else(|| {
                    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
                    json["clusters"][0]["cluster"]["server"]
                        .as_str()
                        .map(str::to_string)
                })
        })
    };
    if server(path) != server(&kubeconfig_path()) {
        return Err(format!(
            "{} is for another cluster than {}",
            path.display(),
            kubeconfig_path().display()
        ));
    }
    Ok(())
}

/// Writes a kubeconfig for a ServiceAccount (which must exist): the admin
/// kubeconfig's server and CA, a fresh one-hour token as the user.
pub fn service_account_kubeconfig(namespace: &str, name: &str) -> PathBuf {
    let out = kubectl(&["-n", namespace, "create", "token", name, "--duration", "1h"]);
    assert!(
        out.status.success(),
        "kubectl create token {namespace}/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("token is text");
    let cluster = |field: &str| {
        let out = kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "--flatten",
            "-o",
            &format!("jsonpath={{.clusters[0].cluster.{field}}}"),
        ]);
        assert!(out.status.success(), "kubectl config view");
        String::from_utf8(out.stdout).expect("kubeconfig is text")
    };
    let user = format!("system:serviceaccount:{namespace}:{name}");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster("server"),
            "certificate-authority-data": cluster("certificate-authority-data"),
        }}],
        "users": [{"name": user, "user": {"token": token.trim()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": user, "namespace": namespace}}],
        "current-context": "sa",
    });
    let dir = repo_root().join("target/e2e-kubeconfigs");
    std::fs::create_dir_all(&dir).expect("kubeconfig dir");
    let path = dir.join(format!("{namespace}-{name}.yaml"));
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    path
}

/// The chart grants leader election on Leases in the release namespace only,
/// but an e2e operator keeps its Lease in its test namespace (so tests
/// running at once do not elect one leader among them). This copies the
/// release's leader-election Role, as the chart rendered it, into
/// `namespace` and binds it to the release's ServiceAccount: the chart's
/// rules, in the namespace the test uses as its "release namespace".
pub fn grant_leader_election(release_namespace: &str, release: &str, namespace: &str) {
    let name = format!("{release}-leader-election");
    let out = kubectl(&["-n", release_namespace, "get", "role", &name, "-o", "json"]);
    assert!(
        out.status.success(),
        "the chart's leader-election Role {release_namespace}/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let role: serde_json::Value = serde_json::from_slice(&out.stdout).expect("Role JSON");
    let objects = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": namespace},
                "rules": role["rules"],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": release, "namespace": release_namespace}],
            },
        ],
    });
    let dir = repo_root().join("target/e2e-kubeconfigs");
    std::fs::create_dir_all(&dir).expect("kubeconfig dir");
    let path = dir.join(format!("{namespace}-leader-election.json"));
    std::fs::write(&path, objects.to_string()).expect("write RBAC");
    let out = kubectl(&["apply", "-f", &path.to_string_lossy()]);
    assert!(
        out.status.success(),
        "grant leader election in {namespace}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = format!("system:serviceaccount:{release_namespace}:{release}");
    wait_authorized(
        &user,
        &["get", "leases.coordination.k8s.io", "-n", namespace],
    );
}

/// Waits until the API server's authorizer has seen a new binding: it
/// learns of RBAC objects through a watch, so a request made right after
/// creating one may still be refused (an operator would exit at once).
pub fn wait_authorized(user: &str, can_i: &[&str]) {
    let start = std::time::Instant::now();
    loop {
        let out = kubectl(&[&["auth", "can-i", "--as", user][..], can_i].concat());
        if out.status.success() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{user} still may not {can_i:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
