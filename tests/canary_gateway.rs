//! Canary with Gateway API routing, on the Gateway API's own standard-channel
//! CRDs (hack/gateway-api-crds.sh, from the sigs.k8s.io/gateway-api Go
//! module). Weight routing is not implemented yet (docs/canary.md says
//! why); what is shown here: a spec that asks for it is reported as
//! Degraded/InvalidSpec and nothing changes, neither the running
//! Deployments nor the user's HTTPRoute.

mod support;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use model_operator::api::{ModelDeployment, Phase};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn install_gateway_api() {
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

#[tokio::test]
async fn gateway_routing_is_reported_as_invalid_and_changes_nothing() {
    install_gateway_api();
    let client = client().await;
    ensure_crd(&client).await;

    // Why the operator cannot own only the weights: the rules of an
    // HTTPRoute (and each rule's backendRefs) are atomic lists, owned as a
    // whole by whichever field manager changes any part of them.
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = crds
        .get("httproutes.gateway.networking.k8s.io")
        .await
        .unwrap();
    let v1 = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1")
        .expect("HTTPRoute v1");
    let schema = serde_json::to_value(&v1.schema).unwrap();
    let rules = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["rules"];
    assert_eq!(rules["x-kubernetes-list-type"], "atomic");
    assert_eq!(
        rules["items"]["properties"]["backendRefs"]["x-kubernetes-list-type"],
        "atomic"
    );

    let ns = TestNamespace::new(&client, "canary-gateway").await;
    let _operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
        "spec": {"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2,
                 "rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 10}]}}},
    }))
    .unwrap();
    mds.create(&PostParams::default(), &md).await.unwrap();
    wait_for(&mds, "m", "be Healthy", TIMEOUT, |m| {
        m.status.as_ref().and_then(|s| s.phase) == Some(Phase::Healthy)
    })
    .await;

    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns.name,
        &ApiResource::from_gvk(&gvk),
    );
    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "rules": [{"backendRefs": [
                {"name": "m-stable", "port": 80, "weight": 100},
                {"name": "m-canary", "port": 80, "weight": 0},
            ]}],
        },
    });
    routes
        .patch("r", &PatchParams::apply("user"), &Patch::Apply(&route))
        .await
        .expect("the user's HTTPRoute");
    let before = routes.get("r").await.unwrap();

    let spec = json!({"spec": {"model": {"version": "2.0"}, "rollout": {"canary": {
        "steps": [{"setWeight": 10}],
        "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
    }}}});
    mds.patch("m", &PatchParams::default(), &Patch::Merge(spec))
        .await
        .unwrap();
    let m = wait_for(&mds, "m", "report InvalidSpec", TIMEOUT, |m| {
        let status = m.status.as_ref();
        status.and_then(|s| s.observed_generation) == m.metadata.generation
            && status.is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Degraded" && c.status == "True" && c.reason == "InvalidSpec"
                })
            })
    })
    .await;
    let status = m.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Degraded));
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert!(
        degraded.message.contains("trafficRouting.gatewayAPI"),
        "{}",
        degraded.message
    );
    // Nothing changed: revision 1 serves on the stable Deployment, no
    // canary, and the route is exactly the user's.
    let stable = deployments.get("m").await.unwrap();
    assert_eq!(model_operator::resources::revision_of(&stable), Some(1));
    assert!(deployments.get_opt("m-canary").await.unwrap().is_none());
    let after = routes.get("r").await.unwrap();
    assert_eq!(after.data["spec"], before.data["spec"]);
    assert!(
        after
            .managed_fields()
            .iter()
            .all(|f| f.manager.as_deref() != Some("model-operator")),
        "the operator wrote to the HTTPRoute"
    );
}
