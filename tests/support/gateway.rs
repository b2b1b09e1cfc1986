//! The Gateway API on the test cluster: its standard-channel CRDs
//! (hack/gateway-api-crds.sh) and the HTTPRoutes users write.

use std::process::Command;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};

use super::cluster::{kubeconfig_path, repo_root};

/// Installs the Gateway API CRDs (idempotent).
pub fn install_gateway_api() {
    let out = Command::new(repo_root().join("hack/gateway-api-crds.sh"))
        .env("KUBECONFIG", kubeconfig_path())
        .env_remove("CLUSTER_KUBECONFIG")
        .output()
        .expect("run hack/gateway-api-crds.sh");
    assert!(
        out.status.success(),
        "hack/gateway-api-crds.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HTTPRoutes of `ns`.
pub fn routes(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}
