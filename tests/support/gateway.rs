//! Other projects' CRDs on the test cluster (hack/module-crds.sh): the
//! Gateway API's standard channel and the HTTPRoutes users write, KEDA's
//! ScaledObject.

use std::process::Command;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};

use super::cluster::{kubeconfig_path, repo_root};

/// Installs the Gateway API CRDs (idempotent).
pub fn install_gateway_api() {
    install_module_crds("gateway-api");
}

/// Installs KEDA's ScaledObject CRD (idempotent); KEDA itself does not run.
pub fn install_keda_crds() {
    install_module_crds("keda");
}

fn install_module_crds(which: &str) {
    let out = Command::new(repo_root().join("hack/module-crds.sh"))
        .arg(which)
        .env("KUBECONFIG", kubeconfig_path())
        .env_remove("CLUSTER_KUBECONFIG")
        .output()
        .expect("run hack/module-crds.sh");
    assert!(
        out.status.success(),
        "hack/module-crds.sh {which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HTTPRoutes of `ns`.
pub fn routes(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}
