//! Other projects' CRDs on the test cluster (hack/module-crds.sh): the
//! Gateway API's standard channel and the HTTPRoutes users write, KEDA's
//! ScaledObject.

use std::process::Command;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::json;

use super::cluster::{kubeconfig_path, repo_root};
use super::setup::Setup;
use super::wait::{eventually, wait_for};

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

/// The (stable, canary) weights of the route's rule `rule` (-1 for a
/// backend missing or without a weight).
pub fn rule_weights(route: &DynamicObject, rule: usize) -> (i64, i64) {
    let backends = route.data["spec"]["rules"][rule]["backendRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of = |name: &str| {
        backends
            .iter()
            .find(|b| b["name"] == name)
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    };
    (of("m-stable"), of("m-canary"))
}

/// Waits until route `r` sends everything to the stable Service (rule
/// `rule`) and the canary Deployment `m-canary` is scaled to 0.
pub async fn back_on_stable_at(s: &Setup, rule: usize, timeout: std::time::Duration) {
    eventually("the route back at 100/0", timeout, || async {
        rule_weights(&routes(&s.client, &s.ns.name).get("r").await.unwrap(), rule) == (100, 0)
    })
    .await;
    wait_for(
        &s.deployments,
        "m-canary",
        "the canary at 0",
        timeout,
        |d| d.spec.as_ref().and_then(|s| s.replicas) == Some(0),
    )
    .await;
}

/// HTTPRoute `r` splitting between model `m`'s two Services, all on
/// stable, opted in.
pub async fn split_route(client: &Client, ns: &str) {
    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "labels": {"mlops.dev/model-deployment": "m"}},
        "spec": {"rules": [{"backendRefs": [
            {"name": "m-stable", "port": 80, "weight": 100},
            {"name": "m-canary", "port": 80, "weight": 0},
        ]}]},
    });
    routes(client, ns)
        .patch(
            "r",
            &kube::api::PatchParams::apply("user").force(),
            &kube::api::Patch::Apply(&route),
        )
        .await
        .expect("the user's HTTPRoute");
}
