//! The real HPA controller (kube-controller-manager's, as users run it)
//! scales on load measured by Prometheus: a Pods metric (vLLM's requests
//! waiting, per pod) and an External one (a queue's length), read through
//! the custom and external metrics APIs that prometheus-adapter serves
//! behind kube-apiserver's aggregation layer (hack/metrics-api.sh). Raising
//! the exporter's value scales 2 → 4; lowering it scales back to 2 within
//! the behavior's window. No stand-in anywhere between the exporter and the
//! Deployment's replicas. First with a plain Deployment and HPA (the
//! infrastructure alone), then with a ModelDeployment whose
//! `spec.autoscaling` the operator turns into that HPA, its canary
//! following the stable pods the HPA sets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::autoscaling::*;
use support::*;

/// Generous: Prometheus scrapes every 2 s, the adapter learns new series
/// names every 5 s, the HPA controller runs every 5 s.
const TIMEOUT: Duration = Duration::from_secs(120);

const WAITING: &str = "vllm:num_requests_waiting";
const QUEUE: &str = "queue_messages_ready";

/// A Deployment of `replicas` simulated pods.
fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "server", "image": "example.invalid/server:1"}]}
            }
        }
    }))
    .expect("Deployment")
}

/// An autoscaling/v2 HPA of Deployment `name` between 2 and 4 replicas on
/// `metric`, scaling down after a 5 s stabilization window (the default
/// is 5 minutes).
fn hpa(name: &str, metric: Value) -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [metric],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}
        }
    }))
    .expect("HorizontalPodAutoscaler")
}

/// How many pods the Deployment `name` asks for.
async fn replicas(api: &Api<Deployment>, name: &str) -> Option<i32> {
    api.get(name).await.expect("get Deployment").spec?.replicas
}

/// Waits until the Deployment `name` asks for `replicas` pods.
async fn wait_replicas(api: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    wait_for(
        api,
        name,
        &format!("be scaled to {replicas}"),
        TIMEOUT,
        |d| d.spec.as_ref().and_then(|s| s.replicas) == Some(replicas),
    )
    .await
}

/// Waits until the HPA found its metric (`ScalingActive`, `ValidMetricFound`).
async fn wait_metric_found(api: &Api<HorizontalPodAutoscaler>, name: &str) {
    wait_for(api, name, "find its metric", TIMEOUT, |h| {
        h.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "ScalingActive"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("ValidMetricFound")
                })
            })
    })
    .await;
}

/// Waits until the HPA controller reports a rescale of `name` to `size`
/// (its own Event, `SuccessfulRescale`); returns its note.
async fn rescaled(client: &Client, namespace: &str, name: &str, size: i32) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let want = format!("New size: {size};");
    eventually(
        &format!("the HPA controller reports {name} rescaled to {size}"),
        TIMEOUT,
        || async {
            let notes: Vec<String> = events
                .list(&ListParams::default())
                .await
                .map_err(|e| vec![e.to_string()])?
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("SuccessfulRescale"))
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .filter_map(|e| e.note)
                .collect();
            notes
                .iter()
                .find(|n| n.contains(&want))
                .cloned()
                .ok_or(notes)
        },
    )
    .await
}

/// The values of the items of a metrics API list, as strings.
fn values(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_hpa_controller_scales_on_a_pods_metric_from_prometheus() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "hpa-pods").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns.name);
    let load = LoadExporter::start(&client, &ns.name).await;
    load.per_pod(WAITING, 1.0);
    deployments
        .create(&PostParams::default(), &deployment("server", 2))
        .await
        .expect("create Deployment");

    // The metric as the HPA controller will read it: through kube-apiserver
    // and the aggregator, one value per pod.
    let path = format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/pods/*/{WAITING}",
        ns.name
    );
    eventually(
        "the custom metrics API serves 1 request waiting for each of the 2 pods",
        TIMEOUT,
        || async {
            let list = get_raw(&client, &path).await?;
            if values(&list) == ["1", "1"] {
                Ok(())
            } else {
                Err(list.to_string())
            }
        },
    )
    .await;

    let metric = json!({"type": "Pods", "pods": {
        "metric": {"name": WAITING},
        "target": {"type": "AverageValue", "averageValue": "5"}}});
    hpas.create(&PostParams::default(), &hpa("server", metric))
        .await
        .expect("create HPA");
    wait_metric_found(&hpas, "server").await;
    assert_eq!(
        replicas(&deployments, "server").await,
        Some(2),
        "1 waiting request per pod is under the target of 5: no change"
    );

    // 9 waiting per pod: 2 × 9 / 5 = 3.6, so 4 pods.
    load.per_pod(WAITING, 9.0);
    wait_replicas(&deployments, "server", 4).await;
    let note = rescaled(&client, &ns.name, "server", 4).await;
    assert!(
        note.contains(WAITING) && note.contains("above target"),
        "{note}"
    );

    // Back to 1 per pod: 4 × 1 / 5 rounds up to 1, held at minReplicas 2
    // once the 5 s stabilization window has passed.
    load.per_pod(WAITING, 1.0);
    wait_replicas(&deployments, "server", 2).await;
    let note = rescaled(&client, &ns.name, "server", 2).await;
    assert!(note.contains("below target"), "{note}");

    // The adapter was asked by the HPA controller itself (its own
    // ServiceAccount, through the aggregator's front proxy) and answered.
    assert!(
        adapter_served(HPA_CONTROLLER, &ns.name, WAITING),
        "no request of {HPA_CONTROLLER} for {WAITING} in {} in the adapter's audit log",
        ns.name
    );
}

#[tokio::test]
async fn the_hpa_controller_scales_on_an_external_metric_from_prometheus() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "hpa-external").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns.name);
    let load = LoadExporter::start(&client, &ns.name).await;
    load.series(QUEUE, &[("queue", "requests")], 5.0);
    // Another queue of the namespace, which the HPA's selector leaves out,
    // and a queue of the same name in another namespace, which the adapter
    // must leave out (an HPA sees its own namespace's series only).
    load.series(QUEUE, &[("queue", "audit")], 1000.0);
    let elsewhere = LoadExporter::start(&client, &format!("{}-elsewhere", ns.name)).await;
    elsewhere.series(QUEUE, &[("queue", "requests")], 1000.0);
    deployments
        .create(&PostParams::default(), &deployment("worker", 2))
        .await
        .expect("create Deployment");

    let path = format!(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/{QUEUE}?labelSelector=queue%3Drequests",
        ns.name
    );
    eventually(
        "the external metrics API serves the requests queue's 5 messages",
        TIMEOUT,
        || async {
            let list = get_raw(&client, &path).await?;
            if values(&list) == ["5"] {
                Ok(())
            } else {
                Err(list.to_string())
            }
        },
    )
    .await;

    let metric = json!({"type": "External", "external": {
        "metric": {"name": QUEUE, "selector": {"matchLabels": {"queue": "requests"}}},
        "target": {"type": "AverageValue", "averageValue": "10"}}});
    hpas.create(&PostParams::default(), &hpa("worker", metric))
        .await
        .expect("create HPA");
    wait_metric_found(&hpas, "worker").await;
    assert_eq!(
        replicas(&deployments, "worker").await,
        Some(2),
        "5 messages for 2 pods is under the target of 10 each: no change"
    );

    // 35 messages: 35 / 10 = 3.5 pods' worth, so 4.
    load.series(QUEUE, &[("queue", "requests")], 35.0);
    wait_replicas(&deployments, "worker", 4).await;
    let note = rescaled(&client, &ns.name, "worker", 4).await;
    assert!(
        note.contains(QUEUE) && note.contains("above target"),
        "{note}"
    );

    load.series(QUEUE, &[("queue", "requests")], 5.0);
    wait_replicas(&deployments, "worker", 2).await;

    assert!(
        adapter_served(HPA_CONTROLLER, &ns.name, QUEUE),
        "no request of {HPA_CONTROLLER} for {QUEUE} in {} in the adapter's audit log",
        ns.name
    );
}

#[tokio::test]
async fn a_model_is_scaled_on_its_pods_metric_and_its_canary_follows() {
    let s = Setup::new("hpa-model").await;
    let load = LoadExporter::start(&s.client, &s.ns.name).await;
    load.per_pod(WAITING, 1.0);
    s.create(json!({
        "model": {"version": "1.0"}, "server": {"image": "srv:1"},
        "rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        "autoscaling": {
            "minReplicas": 2, "maxReplicas": 4,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": WAITING},
                "target": {"type": "AverageValue", "averageValue": "5"}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}
    }))
    .await;
    // The operator's HPA, on the stable Deployment `m`.
    wait_metric_found(&s.hpas, "m").await;
    wait_replicas(&s.deployments, "m", 2).await;

    load.per_pod(WAITING, 9.0);
    wait_replicas(&s.deployments, "m", 4).await;
    let note = rescaled(&s.client, &s.ns.name, "m", 4).await;
    assert!(
        note.contains(WAITING) && note.contains("above target"),
        "{note}"
    );
    s.wait("serve 1.0 on 4 pods", |m| {
        m.status
            .as_ref()
            .is_some_and(|st| st.available_replicas == 4)
    })
    .await;

    // A new version at its 50% step: ceil(50% × 4) canary pods, while the
    // HPA keeps the stable Deployment's replicas.
    s.set_version("2.0").await;
    wait_replicas(&s.deployments, "m-canary", 2).await;

    // The load falls: the HPA scales the stable Deployment back to 2 and
    // the canary follows to ceil(50% × 2).
    load.per_pod(WAITING, 1.0);
    wait_replicas(&s.deployments, "m", 2).await;
    wait_replicas(&s.deployments, "m-canary", 1).await;
    assert!(
        adapter_served(HPA_CONTROLLER, &s.ns.name, WAITING),
        "no request of {HPA_CONTROLLER} for {WAITING} in {} in the adapter's audit log",
        s.ns.name
    );
}
