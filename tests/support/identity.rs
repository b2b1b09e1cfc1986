//! Identities other than the admin's: ServiceAccount tokens in kubeconfig
//! files, for the operator (the Helm chart's RBAC) and for people with few
//! rights (the kubectl plugin's forbidden path).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{kubeconfig_path, kubectl, repo_root};

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
