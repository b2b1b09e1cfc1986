//! `spec.autoscaling` on the real control plane: the HPA's whole
//! vocabulary (metrics of every source, behavior) passes the API server's
//! own validation of the HPA; `mode: External` leaves the count to
//! whoever writes the ModelDeployment's scale subresource, as KEDA does;
//! and zero replicas is a normal state in which a new version waits for
//! pods instead of being judged on none.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use model_operator::resources::{labels::MANAGER, revision_of};
use serde::Deserialize;
use serde_json::{Value, json};
use support::gateway::install_keda_crds;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn ready(m: &ModelDeployment) -> Option<(String, String)> {
    condition(m, "Ready").map(|(s, r, _)| (s, r))
}

fn serving(m: &ModelDeployment, pods: i32) -> bool {
    phase(m) == Some(Phase::Healthy)
        && ready(m) == Some(("True".into(), "Serving".into()))
        && m.status.as_ref().map(|s| s.available_replicas) == Some(pods)
}

fn available(d: &Deployment) -> i32 {
    d.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Writes the ModelDeployment's `/scale` as KEDA's HPA does: the scale
/// subresource, under a field manager of its own.
/// The pods `selector` selects that are not terminating.
async fn live_pods(s: &Setup, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(s.client.clone(), &s.ns.name)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn scale(s: &Setup, replicas: i32) {
    s.mds
        .patch_scale(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("patch /scale");
}

/// No managedFields entry of the operator's owns a field of the spec: the
/// operator writes status only.
fn operator_never_wrote_the_spec(m: &ModelDeployment) {
    for entry in m.managed_fields() {
        if entry.manager.as_deref() != Some(MANAGER) {
            continue;
        }
        let fields = serde_json::to_value(&entry.fields_v1).unwrap();
        assert!(
            fields.get("f:spec").is_none(),
            "the operator owns spec fields: {entry:?}"
        );
        assert_eq!(entry.subresource.as_deref(), Some("status"), "{entry:?}");
    }
}

#[tokio::test]
async fn the_hpa_takes_pods_and_external_metrics_and_behavior() {
    let s = Setup::new("hpa-metrics").await;
    let metrics = json!([
        {"type": "Pods", "pods": {
            "metric": {"name": "vllm:num_requests_waiting"},
            "target": {"type": "AverageValue", "averageValue": "5"}}},
        {"type": "External", "external": {
            "metric": {"name": "queue_messages_ready",
                       "selector": {"matchLabels": {"queue": "chat"}}},
            "target": {"type": "AverageValue", "averageValue": "30"}}},
        {"type": "Resource", "resource": {
            "name": "memory", "target": {"type": "AverageValue", "averageValue": "20Gi"}}},
    ]);
    let behavior = json!({
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}]},
        "scaleDown": {"stabilizationWindowSeconds": 600, "selectPolicy": "Min",
                      "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60},
                                   {"type": "Pods", "value": 1, "periodSeconds": 120}]},
    });
    s.create(json!({"model": {"version": "1"}, "server": {"image": "srv:1"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4, "metrics": metrics, "behavior": behavior}}))
        .await;
    s.wait("serve 2 pods", |m| serving(m, 2)).await;

    // What the API server stored, after validating and defaulting the HPA.
    let hpa = s.hpas.get("m").await.unwrap();
    let spec = serde_json::to_value(&hpa.spec).unwrap();
    assert_eq!(
        spec["metrics"], metrics,
        "metrics stored as the spec wrote them"
    );
    assert_eq!(spec["behavior"], behavior, "behavior round-trips");
    assert_eq!(
        (spec["minReplicas"].clone(), spec["maxReplicas"].clone()),
        (json!(2), json!(4))
    );
    assert_eq!(
        spec["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "m"})
    );
    let applied: Vec<_> = hpa
        .managed_fields()
        .iter()
        .filter(|f| f.manager.as_deref() == Some(MANAGER))
        .map(|f| f.operation.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        applied,
        ["Apply"],
        "one server-side apply entry of the operator's"
    );

    // Without metrics, the CPU shorthand keeps its meaning.
    s.set(json!({"autoscaling": {"metrics": null, "behavior": null, "targetCPUUtilizationPercentage": 65}}))
        .await;
    let hpa = wait_for(&s.hpas, "m", "scale on CPU at 65%", TIMEOUT, |h| {
        let spec = serde_json::to_value(&h.spec).unwrap();
        spec["metrics"]
            == json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 65}}}])
    })
    .await;
    assert_eq!(hpa.spec.behavior, None, "behavior removed with the field");
}

#[tokio::test]
async fn an_external_scaler_writes_scale_and_the_deployment_follows() {
    let s = Setup::new("hpa-external").await;
    s.create(
        json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 2,
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}),
    )
    .await;
    s.wait("serve 2 pods", |m| serving(m, 2)).await;
    assert!(s.hpas.get_opt("m").await.unwrap().is_some());

    // Handed to an outside scaler: the operator's HPA goes.
    s.set(json!({"autoscaling": {"mode": "External", "minReplicas": null, "maxReplicas": null}}))
        .await;
    wait_gone(&s.hpas, "m", TIMEOUT).await;

    // KEDA writes /scale; the Deployment follows.
    scale(&s, 3).await;
    wait_for(&s.deployments, "m", "run 3 pods", TIMEOUT, |d| {
        available(d) == 3
    })
    .await;
    let m = s.wait("serve 3 pods", |m| serving(m, 3)).await;
    // The scale subresource reads what the scaler needs: the count and a
    // selector of the model's pods.
    let read = s.mds.get_scale("m").await.unwrap();
    assert_eq!(read.spec.as_ref().and_then(|sp| sp.replicas), Some(3));
    assert_eq!(read.status.as_ref().map(|st| st.replicas), Some(3));
    let selector = read.status.unwrap().selector.expect("scale selector");
    let pods = live_pods(&s, &selector).await;
    assert_eq!(pods.len(), 3, "the scale selector selects the model's pods");
    operator_never_wrote_the_spec(&m);
    assert_eq!(
        revision_of(&s.deployments.get("m").await.unwrap()),
        Some(1),
        "scaling is no revision"
    );
}

#[tokio::test]
async fn zero_replicas_is_a_state_and_a_version_waits_for_pods() {
    let s = Setup::new("hpa-zero").await;
    s.create(
        json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 2,
        "autoscaling": {"mode": "External"}}),
    )
    .await;
    s.wait("serve 2 pods", |m| serving(m, 2)).await;

    scale(&s, 0).await;
    let m = s
        .wait("be scaled to zero", |m| {
            ready(m) == Some(("False".into(), "ScaledToZero".into()))
                && m.status.as_ref().map(|st| st.replicas) == Some(0)
        })
        .await;
    assert_eq!(phase(&m), Some(Phase::Healthy), "nothing is wrong at zero");
    let status = m.status.clone().unwrap();
    assert!(
        status.alerts.is_empty(),
        "no alert at zero: {:?}",
        status.alerts
    );
    assert_eq!(condition(&m, "Degraded").map(|c| c.0), Some("False".into()));

    // A new version while at zero: not judged on no pods.
    s.set_version("2").await;
    let m = s
        .wait("wait for pods", |m| {
            condition(m, "Progressing")
                .is_some_and(|(st, r, _)| st == "True" && r == "ScaledToZero")
        })
        .await;
    let status = m.status.clone().unwrap();
    assert_eq!(phase(&m), Some(Phase::Progressing));
    assert_eq!(
        status.stable_revision,
        Some(1),
        "revision 2 is not promoted on no pods"
    );
    let entry = status.history.iter().find(|e| e.revision == 2).unwrap();
    assert_eq!(entry.outcome, Outcome::Progressing);
    assert!(
        status.alerts.is_empty(),
        "no alert at zero: {:?}",
        status.alerts
    );
    let (_, _, message) = condition(&m, "Progressing").unwrap();
    assert!(message.contains("waits for pods"), "{message}");
    // Stays so: nothing judges it while nothing runs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = s.mds.get("m").await.unwrap();
    assert_eq!(m.status.as_ref().unwrap().stable_revision, Some(1));
    assert_ne!(phase(&m), Some(Phase::RolledBack));

    // Scaled up: revision 2 rolls out, is judged and promoted.
    scale(&s, 2).await;
    let m = s
        .wait("promote revision 2 on 2 pods", |m| {
            serving(m, 2) && m.status.as_ref().and_then(|st| st.stable_revision) == Some(2)
        })
        .await;
    let pods = live_pods(&s, m.status.as_ref().unwrap().selector.as_deref().unwrap()).await;
    let revisions: Vec<_> = pods
        .iter()
        .map(|p| p.labels().get("mlops.dev/revision").cloned())
        .collect();
    assert_eq!(revisions, [Some("2".to_string()), Some("2".to_string())]);
    operator_never_wrote_the_spec(&m);
}

/// A ModelDeployment manifest with this `autoscaling`.
fn with(autoscaling: Value) -> Value {
    json!({"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "bad"},
        "spec": {"model": {"version": "1"}, "server": {"image": "srv:1"}, "autoscaling": autoscaling}})
}

#[tokio::test]
async fn bad_autoscaling_is_refused_at_apply_naming_the_field() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "hpa-refused").await;
    let pods_metric = |target: Value| json!({"type": "Pods", "pods": {"metric": {"name": "q"}, "target": target}});
    let cases = [
        (
            with(json!({"minReplicas": 0, "maxReplicas": 2})),
            "set autoscaling.mode: External",
        ),
        (
            with(json!({"minReplicas": 1})),
            "autoscaling.maxReplicas is required with mode HPA",
        ),
        (
            with(json!({"mode": "External", "maxReplicas": 3})),
            "autoscaling.mode External takes no minReplicas, maxReplicas",
        ),
        (
            with(
                json!({"maxReplicas": 3, "targetCPUUtilizationPercentage": 70,
                "metrics": [pods_metric(json!({"type": "AverageValue", "averageValue": "5"}))]}),
            ),
            "autoscaling takes targetCPUUtilizationPercentage or metrics, not both",
        ),
        (
            with(json!({"maxReplicas": 3, "metrics": [{"type": "Pods",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]})),
            "spec.autoscaling.metrics[0]: Invalid value: a metric sets the one field its type names",
        ),
        (
            with(
                json!({"maxReplicas": 3, "metrics": [pods_metric(json!({"type": "Utilization", "averageUtilization": 50}))]}),
            ),
            "pods metrics take target type AverageValue",
        ),
        (
            with(
                json!({"maxReplicas": 3, "metrics": [pods_metric(json!({"type": "AverageValue", "value": "5"}))]}),
            ),
            "spec.autoscaling.metrics[0].pods.target: Invalid value: a target sets the one field its type names",
        ),
        (
            with(
                json!({"maxReplicas": 3, "metrics": [pods_metric(json!({"type": "AverageValue", "averageValue": "five"}))]}),
            ),
            "value and averageValue must be quantities",
        ),
        (
            with(json!({"maxReplicas": 3, "metrics": [{"type": "Queue"}]})),
            "spec.autoscaling.metrics[0].type: Unsupported value: \"Queue\"",
        ),
        (
            with(
                json!({"maxReplicas": 3, "behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 3600}]}}}),
            ),
            "spec.autoscaling.behavior.scaleDown.policies[0].periodSeconds: Invalid value: 3600",
        ),
    ];
    for (manifest, expected) in cases {
        let refusal = refused(&ns.name, &manifest);
        assert!(
            refusal.contains(expected),
            "{manifest}\nexpected {expected:?} in:\n{refusal}"
        );
    }
}

/// `kubectl apply --dry-run=server` of `manifest`: its error text, failing
/// the test if it was accepted.
fn refused(namespace: &str, manifest: &Value) -> String {
    let dir = repo_root().join("target/e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{namespace}-autoscaling.json"));
    std::fs::write(&file, manifest.to_string()).unwrap();
    let out = kubectl(&[
        "-n",
        namespace,
        "apply",
        "--dry-run=server",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "accepted: {manifest}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// config/examples/keda.yaml as a user applies it: the ModelDeployment and
/// a ScaledObject checked against KEDA's own CRD (KEDA does not run here),
/// aimed at the ModelDeployment's scale subresource.
#[tokio::test]
async fn the_keda_example_is_accepted_and_aims_at_the_scale_subresource() {
    install_keda_crds();
    assert_example_accepted("keda-example", "config/examples/keda.yaml").await;
    let text = std::fs::read_to_string(repo_root().join("config/examples/keda.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .collect();
    let model = docs
        .iter()
        .find(|d| d["kind"] == "ModelDeployment")
        .unwrap();
    let scaled = docs.iter().find(|d| d["kind"] == "ScaledObject").unwrap();
    assert_eq!(model["spec"]["autoscaling"], json!({"mode": "External"}));
    assert!(
        model["spec"].get("replicas").is_none(),
        "Git states no replicas: the scaler owns them"
    );
    assert_eq!(
        scaled["spec"]["scaleTargetRef"],
        json!({"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "name": model["metadata"]["name"]})
    );
    // The target has the scale subresource KEDA's HPA will use.
    let crd = serde_json::to_value(model_operator::api::crd()).unwrap();
    assert_eq!(
        crd["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
}
