//! Canary with Gateway API routing, on the Gateway API's own standard-channel
//! CRDs (hack/module-crds.sh gateway-api, from the sigs.k8s.io/gateway-api Go
//! module); no gateway controller: the HTTPRoute's weights are the
//! contract. The operator sets the two backend weights of the user's
//! route and nothing else in it (docs/canary.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};
use support::gateway::{back_on_stable_at, install_gateway_api, routes, rule_weights};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The user's route, as Git would hold it: everything but the weights is
/// the user's and must stay exactly so.
fn users_route(backends: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "labels": {"team": "fraud", "mlops.dev/model-deployment": "m"}},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateways"}],
            "hostnames": ["fraud.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/healthz"}}],
                 "backendRefs": [{"name": "status-page", "port": 8080}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"add": [{"name": "x-team", "value": "fraud"}]}}],
                 "backendRefs": backends},
            ],
        },
    })
}

async fn apply_route(client: &Client, ns: &str, route: &Value) {
    routes(client, ns)
        .patch(
            "r",
            &PatchParams::apply("user").force(),
            &Patch::Apply(route),
        )
        .await
        .expect("the user's HTTPRoute");
}

/// The (stable, canary) weights of the splitting rule.
fn weights(route: &DynamicObject) -> (i64, i64) {
    rule_weights(route, 1)
}

/// The route's spec without any weight: what must never change.
fn without_weights(route: &DynamicObject) -> Value {
    let mut spec = route.data["spec"].clone();
    for rule in spec["rules"].as_array_mut().into_iter().flatten() {
        for backend in rule["backendRefs"].as_array_mut().into_iter().flatten() {
            if let Some(b) = backend.as_object_mut() {
                b.remove("weight");
            }
        }
    }
    spec
}

/// What the operator's field manager records on the route: an Update (a
/// JSON patch, never an apply) of `spec.rules` and nothing else. (The rules
/// are an atomic list in the Gateway API's CRD, so the API server records
/// the list, not the weights inside it: docs/canary.md.)
fn assert_operator_wrote_only_rules(route: &DynamicObject) {
    let ours: Vec<_> = route
        .managed_fields()
        .iter()
        .filter(|f| f.manager.as_deref() == Some("model-operator"))
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", route.managed_fields());
    assert_eq!(ours[0].operation.as_deref(), Some("Update"));
    let fields = serde_json::to_value(&ours[0].fields_v1).unwrap();
    assert_eq!(fields, json!({"f:spec": {"f:rules": {}}}));
}

/// Ready endpoints of Service `service`, by their pod's revision label.
async fn endpoint_revisions(client: &Client, ns: &str, service: &str) -> Vec<String> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let mut revisions = Vec::new();
    for endpoint in slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
    {
        if endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(true) {
            continue;
        }
        let Some(name) = endpoint.target_ref.as_ref().and_then(|r| r.name.clone()) else {
            continue;
        };
        if let Some(pod) = pods.get_opt(&name).await.unwrap() {
            revisions.push(
                pod.labels()
                    .get("mlops.dev/revision")
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    revisions.sort();
    revisions
}

/// After an abort: the route sends everything to stable again, the canary
/// has no pods, and the route is otherwise still the user's. Returns it.
async fn back_on_stable(s: &Setup, users: &Value) -> DynamicObject {
    back_on_stable_at(s, 1, TIMEOUT).await;
    let route = routes(&s.client, &s.ns.name).get("r").await.unwrap();
    assert_eq!(&without_weights(&route), users);
    route
}

fn degraded_message(m: &ModelDeployment) -> Option<String> {
    degraded_because(m, "InvalidSpec")
}

fn degraded_because(m: &ModelDeployment, why: &str) -> Option<String> {
    let (status, reason, message) = condition(m, "Degraded")?;
    let current = m.status.as_ref()?.observed_generation == m.metadata.generation;
    (current && status == "True" && reason == why).then_some(message)
}

/// A canary ModelDeployment `m` routed through HTTPRoute `r`.
fn routed_canary() -> Value {
    json!({
        "model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2,
        "rollout": {"strategy": "Canary", "canary": {
            "steps": [{"setWeight": 50}, {"pause": {}}],
            "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
        }},
    })
}

/// Issue 24: a route that splits between Services another team created
/// under the names `<name>-stable`/`<name>-canary`, even one that opts in,
/// keeps its weights; so does a route that does not opt in. The
/// ModelDeployment says what to fix (NameConflict).
#[tokio::test]
async fn a_route_to_foreign_services_or_without_opt_in_keeps_its_weights() {
    install_gateway_api();
    let s = Setup::new("route-foreign").await;
    let ns = s.ns.name.clone();
    for name in ["m-stable", "m-canary"] {
        s.services
            .create(
                &Default::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "model-operator"}},
                    "spec": {"selector": {"team": "other"}, "ports": [{"port": 80}]},
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let theirs = json!([
        {"name": "m-stable", "port": 80, "weight": 30},
        {"name": "m-canary", "port": 80, "weight": 70},
    ]);
    apply_route(&s.client, &ns, &users_route(theirs.clone())).await;
    s.create(routed_canary()).await;
    let m = wait_for(&s.mds, "m", "report the foreign Services", TIMEOUT, |m| {
        degraded_because(m, "NameConflict").is_some()
    })
    .await;
    let message = degraded_because(&m, "NameConflict").unwrap();
    assert!(
        message.contains("Service m-stable") && message.contains("HTTPRoute r"),
        "{message}"
    );
    consistently("the route keeps 30/70", Duration::from_secs(10), || async {
        let route = routes(&s.client, &ns).get("r").await.unwrap();
        weights(&route) == (30, 70)
            && route
                .managed_fields()
                .iter()
                .all(|f| f.manager.as_deref() != Some("model-operator"))
    })
    .await;

    // Their Services gone, but the route no longer opts in: still untouched.
    for name in ["m-stable", "m-canary"] {
        delete(&s.services, name).await;
    }
    let mut not_opted_in = users_route(theirs);
    not_opted_in["metadata"]["labels"] = json!({"team": "fraud"});
    routes(&s.client, &ns)
        .replace("r", &Default::default(), &{
            let mut route: DynamicObject = serde_json::from_value(not_opted_in).unwrap();
            route.metadata.resource_version = routes(&s.client, &ns)
                .get("r")
                .await
                .unwrap()
                .metadata
                .resource_version;
            route
        })
        .await
        .unwrap();
    wait_for(&s.mds, "m", "report the missing opt-in", TIMEOUT, |m| {
        degraded_because(m, "NameConflict")
            .is_some_and(|msg| msg.contains("mlops.dev/model-deployment=m"))
    })
    .await;
    consistently(
        "the route still keeps 30/70",
        Duration::from_secs(10),
        || async { weights(&routes(&s.client, &ns).get("r").await.unwrap()) == (30, 70) },
    )
    .await;
}

#[tokio::test]
async fn a_canary_sets_only_the_weights_of_the_users_httproute() {
    install_gateway_api();
    let s = Setup::new("canary-gateway").await;
    let ns = s.ns.name.clone();

    // The rules of an HTTPRoute are atomic lists: no field manager can own
    // a weight alone, which is why the operator patches instead of applying.
    let crd = Api::<CustomResourceDefinition>::all(s.client.clone())
        .get("httproutes.gateway.networking.k8s.io")
        .await
        .unwrap();
    let v1 = crd.spec.versions.iter().find(|v| v.name == "v1").unwrap();
    let schema = serde_json::to_value(&v1.schema).unwrap();
    let rules = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["rules"];
    assert_eq!(rules["x-kubernetes-list-type"], "atomic");

    // A route that does not exist yet: InvalidSpec saying what to create,
    // and nothing is created.
    s.create(json!({
        "model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2,
        "rollout": {"strategy": "Canary", "canary": {
            "steps": [
                {"setWeight": 10}, {"pause": {"duration": "4s"}},
                {"setWeight": 50}, {"pause": {"duration": "4s"}},
                {"setWeight": 100}, {"pause": {"duration": "4s"}},
            ],
            "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
        }},
    }))
    .await;
    let m = wait_for(&s.mds, "m", "report the missing route", TIMEOUT, |m| {
        degraded_message(m).is_some()
    })
    .await;
    let message = degraded_message(&m).unwrap();
    assert!(
        message.contains("HTTPRoute r") && message.contains("m-stable and m-canary"),
        "{message}"
    );
    assert!(s.deployments.get_opt("m").await.unwrap().is_none());

    // A route that sends to only one of the Services: the same, and the
    // route is not touched.
    apply_route(
        &s.client,
        &ns,
        &users_route(json!([{"name": "m-stable", "port": 80}])),
    )
    .await;
    wait_for(&s.mds, "m", "report the unsuitable route", TIMEOUT, |m| {
        degraded_message(m).is_some_and(|msg| msg.contains("sends to only one"))
    })
    .await;
    assert!(s.deployments.get_opt("m").await.unwrap().is_none());
    let route = routes(&s.client, &ns).get("r").await.unwrap();
    assert!(
        route
            .managed_fields()
            .iter()
            .all(|f| f.manager.as_deref() != Some("model-operator"))
    );

    // The fixed route, with weights the operator has not chosen: the first
    // version rolls out and all traffic goes to the stable Service.
    apply_route(
        &s.client,
        &ns,
        &users_route(json!([
            {"name": "m-stable", "port": 80, "weight": 50},
            {"name": "m-canary", "port": 80, "weight": 50},
        ])),
    )
    .await;
    let users = without_weights(&routes(&s.client, &ns).get("r").await.unwrap());
    wait_for(&s.mds, "m", "be Healthy on 1.0", TIMEOUT, |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;
    let route = eventually("the route sends everything to stable", TIMEOUT, || async {
        let route = routes(&s.client, &ns).get("r").await.unwrap();
        (weights(&route) == (100, 0)).then_some(route)
    })
    .await;
    assert_eq!(without_weights(&route), users);
    assert_operator_wrote_only_rules(&route);
    eventually("m-stable has the stable pods", TIMEOUT, || async {
        endpoint_revisions(&s.client, &ns, "m-stable").await == ["1", "1"]
    })
    .await;

    // Version 2.0: the weights follow every step, then all traffic is back
    // on the stable Service, which now runs 2.0.
    s.set(json!({"model": {"version": "2.0"}})).await;
    // Every distinct weight pair the route shows on the way, and whether
    // both Services selected the right pods while it showed 50/50.
    let seen: RefCell<Vec<(i64, i64)>> = RefCell::new(vec![(100, 0)]);
    let saw_both = Cell::new(false);
    eventually(
        "2.0 is promoted and the weights back at 100/0",
        Duration::from_secs(240),
        || async {
            let route = routes(&s.client, &ns).get("r").await.unwrap();
            let now = weights(&route);
            assert_eq!(
                without_weights(&route),
                users,
                "the operator changed more than weights"
            );
            if seen.borrow().last() != Some(&now) {
                seen.borrow_mut().push(now);
            }
            if now == (50, 50) && !saw_both.get() {
                let (stable_pods, canary_pods) = (
                    endpoint_revisions(&s.client, &ns, "m-stable").await,
                    endpoint_revisions(&s.client, &ns, "m-canary").await,
                );
                saw_both.set(
                    stable_pods.iter().all(|r| r == "1")
                        && !canary_pods.is_empty()
                        && canary_pods.iter().all(|r| r == "2"),
                );
            }
            let m = s.mds.get("m").await.unwrap();
            if stable(&m) == Some(2) && now == (100, 0) {
                Ok(())
            } else {
                Err(format!(
                    "weights seen {:?}, status {:?}",
                    seen.borrow(),
                    m.status
                ))
            }
        },
    )
    .await;
    let (seen, saw_both) = (seen.into_inner(), saw_both.get());
    assert_eq!(seen, [(100, 0), (90, 10), (50, 50), (0, 100), (100, 0)]);
    assert!(
        saw_both,
        "at 50/50, m-stable and m-canary selected 1.0 and 2.0 pods"
    );
    let route = routes(&s.client, &ns).get("r").await.unwrap();
    assert_operator_wrote_only_rules(&route);
    eventually(
        "m-stable has the 2.0 pods and m-canary none",
        TIMEOUT,
        || async {
            endpoint_revisions(&s.client, &ns, "m-stable").await == ["2", "2"]
                && endpoint_revisions(&s.client, &ns, "m-canary")
                    .await
                    .is_empty()
        },
    )
    .await;

    // Abort by hand while 3.0 takes 10%: the weight goes back to 0 and the
    // canary to 0 pods; the spec is never written.
    s.set(json!({"model": {"version": "3.0"}})).await;
    eventually("3.0 takes 10%", TIMEOUT, || async {
        weights(&routes(&s.client, &ns).get("r").await.unwrap()) == (90, 10)
    })
    .await;
    let generation = s.mds.get("m").await.unwrap().metadata.generation;
    kubectl_model(&ns, &["abort", "m"]);
    let m = wait_for(&s.mds, "m", "abort 3.0", TIMEOUT, |m| {
        outcome(m, 3) == Some(Outcome::RolledBack)
    })
    .await;
    assert_eq!(m.metadata.generation, generation);
    back_on_stable(&s, &users).await;
    assert_eq!(s.mds.get("m").await.unwrap().spec.model.version, "3.0");
}

#[tokio::test]
async fn the_gateway_canary_example_is_accepted_by_the_api_server() {
    install_gateway_api();
    assert_example_accepted(
        "canary-gateway-example",
        "config/examples/canary-gateway.yaml",
    )
    .await;
}

#[tokio::test]
async fn a_regression_at_step_2_sets_the_canarys_weight_to_0() {
    use support::gates::{Gates, analysis, setup};
    install_gateway_api();
    let s = setup("canary-gateway-abort").await;
    let ns = s.ns.name.clone();
    apply_route(
        &s.client,
        &ns,
        &users_route(json!([
            {"name": "m-stable", "port": 80, "weight": 100},
            {"name": "m-canary", "port": 80, "weight": 0},
        ])),
    )
    .await;
    let users = without_weights(&routes(&s.client, &ns).get("r").await.unwrap());
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    s.create(json!({
        "model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2,
        "rollout": {
            "strategy": "Canary",
            "canary": {
                "steps": [{"setWeight": 10}, {"pause": {"duration": "1s"}},
                          {"setWeight": 50}, {"pause": {}}],
                "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
            },
            "analysis": analysis(json!({}), 0.05, None),
        },
    }))
    .await;
    s.wait("promote 1.0", |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;

    s.set_version("2.0").await;
    let m = s
        .wait("hold at 50% after passing step 1", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.canary.as_ref())
                .is_some_and(|c| c.revision == 2 && c.step_index == 3)
        })
        .await;
    let generation = m.metadata.generation;
    eventually("the route at 50/50", TIMEOUT, || async {
        weights(&routes(&s.client, &ns).get("r").await.unwrap()) == (50, 50)
    })
    .await;

    // The canary regresses: weight 0, then its pods to 0; history says at
    // which step; the spec is never written; no retry loop.
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.30)]);
    let m = s
        .wait("roll 2.0 back", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "AnalysisFailed");
    assert!(
        entry.message.contains("(canary at step 4/4"),
        "{}",
        entry.message
    );
    assert_eq!(m.metadata.generation, generation);
    let route = back_on_stable(&s, &users).await;
    assert_operator_wrote_only_rules(&route);
    let started = s
        .events()
        .await
        .iter()
        .filter(|(reason, _)| reason == "RolloutStarted")
        .count();
    assert_eq!(started, 1, "the failed canary is not started again");
}
