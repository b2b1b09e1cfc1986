//! Safe in a shared cluster (issue 11), in the cluster: no ModelDeployment
//! can take over what it does not own, and one that cannot be decoded or a
//! stray pod does not stop the operator for the other teams. Over the
//! network: tests/tenancy_egress.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use model_operator::api::ModelDeployment;
use serde_json::{Value, json};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

fn degraded_because(md: &ModelDeployment, reason: &str) -> bool {
    condition(md, "Degraded").is_some_and(|(status, r, _)| status == "True" && r == reason)
}

/// A foreign object as `kubectl create` makes it: no owner, no labels.
fn foreign<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("foreign object")
}

#[tokio::test]
async fn foreign_children_are_never_taken_over_nor_deleted() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "tenancy-owner").await;
    let _operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let services = Api::<Service>::namespaced(client.clone(), &ns.name);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), &ns.name);

    // Another team's Service, named like the ModelDeployment to come.
    let theirs: Service = foreign(json!({
        "metadata": {"name": "svc-taken"},
        "spec": {"selector": {"team": "b"}, "ports": [{"port": 8080}]},
    }));
    let theirs = services
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create foreign Service");
    // Another team's Deployment.
    let their_deployment: Deployment = foreign(json!({
        "metadata": {"name": "dep-taken"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"team": "b"}},
            "template": {"metadata": {"labels": {"team": "b"}},
                "spec": {"containers": [{"name": "c", "image": "theirs:1"}]}},
        },
    }));
    let their_deployment = deployments
        .create(&PostParams::default(), &their_deployment)
        .await
        .expect("create foreign Deployment");
    // A ControllerRevision with the name the first revision would get.
    let their_revision: ControllerRevision = foreign(json!({
        "metadata": {"name": "rev-taken-r1"},
        "data": {"theirs": true},
        "revision": 1,
    }));
    let their_revision = revisions
        .create(&PostParams::default(), &their_revision)
        .await
        .expect("create foreign ControllerRevision");

    let spec = json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}});
    for name in ["svc-taken", "dep-taken", "rev-taken"] {
        mds.create(&PostParams::default(), &model(name, spec.clone()))
            .await
            .expect("create ModelDeployment");
    }
    for (name, kind, object) in [
        ("svc-taken", "Service", "svc-taken"),
        ("dep-taken", "Deployment", "dep-taken"),
        ("rev-taken", "ControllerRevision", "rev-taken-r1"),
    ] {
        let md = wait_for(&mds, name, "be Degraded: NameConflict", TIMEOUT, |m| {
            degraded_because(m, "NameConflict")
        })
        .await;
        let (_, _, message) = condition(&md, "Degraded").expect("Degraded");
        assert!(
            message.contains(&format!("{kind} {}/{object}", ns.name)),
            "the condition names the object: {message}"
        );
        // The Event follows the status write: a Warning names the object.
        warning_event(&client, &ns.name, name, "NameConflict", object, TIMEOUT).await;
    }

    // Untouched: no field of ours, no owner reference, their spec. (The
    // Deployment's status moves on: the deployment controller runs it.)
    let ours = |fields: Option<
        &Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>,
    >| {
        fields
            .into_iter()
            .flatten()
            .any(|f| f.manager.as_deref() == Some("model-operator"))
    };
    let now = services.get("svc-taken").await.expect("their Service");
    assert_eq!(now.resource_version(), theirs.resource_version());
    assert!(now.owner_references().is_empty());
    assert!(!ours(now.metadata.managed_fields.as_ref()));
    assert_eq!(
        now.spec.and_then(|s| s.selector),
        Some([("team".to_string(), "b".to_string())].into())
    );
    let now = deployments
        .get("dep-taken")
        .await
        .expect("their Deployment");
    assert_eq!(
        now.metadata.generation,
        their_deployment.metadata.generation
    );
    assert!(now.owner_references().is_empty());
    assert!(!ours(now.metadata.managed_fields.as_ref()));
    let image = now
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
    assert_eq!(image.as_deref(), Some("theirs:1"));
    let now = revisions.get("rev-taken-r1").await.expect("their revision");
    assert_eq!(now.resource_version(), their_revision.resource_version());
    assert!(now.owner_references().is_empty());

    // Deleting the ModelDeployments leaves them in place.
    for name in ["svc-taken", "dep-taken", "rev-taken"] {
        mds.delete(name, &DeleteParams::foreground())
            .await
            .expect("delete ModelDeployment");
        wait_gone(&mds, name, TIMEOUT).await;
    }
    // The garbage collector has had its chance: the ModelDeployments'
    // own children (e.g. svc-taken's Deployment) are gone.
    wait_gone(&deployments, "svc-taken", TIMEOUT).await;
    assert!(services.get_opt("svc-taken").await.unwrap().is_some());
    assert!(deployments.get_opt("dep-taken").await.unwrap().is_some());
    assert!(revisions.get_opt("rev-taken-r1").await.unwrap().is_some());
}

/// The local cluster's etcd client port, from kwokctl's configuration
/// (hack/cluster.sh: `CLUSTER_NAME`, `CLUSTER_WORKDIR`).
fn etcd_url() -> String {
    let name = std::env::var("CLUSTER_NAME").unwrap_or_else(|_| "model-operator".into());
    let workdir = std::env::var("CLUSTER_WORKDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".local/kwok"));
    let config = workdir.join("clusters").join(&name).join("kwok.yaml");
    let text =
        std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let port = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("etcdPort:"))
        .map(|p| p.trim().to_string())
        .expect("etcdPort in kwok.yaml");
    format!("http://127.0.0.1:{port}")
}

/// Base64, as etcd's JSON gateway wants it (k8s-openapi's ByteString
/// serializes as such).
fn b64(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).expect("base64")
}

/// Rewrites a ModelDeployment straight in etcd (through its JSON gateway),
/// past the API server's validation: as an older API server, or a newer
/// CRD, could have stored it.
async fn rewrite_in_etcd(namespace: &str, name: &str, edit: impl Fn(&mut Value)) {
    let http = reqwest::Client::new();
    let key = format!("/registry/mlops.dev/modeldeployments/{namespace}/{name}");
    let range: Value = http
        .post(format!("{}/v3/kv/range", etcd_url()))
        .json(&json!({"key": b64(key.as_bytes())}))
        .send()
        .await
        .expect("etcd range")
        .json()
        .await
        .expect("etcd answer");
    let stored: k8s_openapi::ByteString =
        serde_json::from_value(range["kvs"][0]["value"].clone()).expect("the object is in etcd");
    let mut object: Value = serde_json::from_slice(&stored.0).expect("stored as JSON");
    edit(&mut object);
    let put = http
        .post(format!("{}/v3/kv/put", etcd_url()))
        .json(&json!({"key": b64(key.as_bytes()), "value": b64(object.to_string().as_bytes())}))
        .send()
        .await
        .expect("etcd put");
    assert!(put.status().is_success(), "etcd put: {}", put.status());
}

fn healthy(md: &ModelDeployment) -> bool {
    md.status.as_ref().and_then(|s| s.phase) == Some(model_operator::api::Phase::Healthy)
}

#[tokio::test]
async fn an_undecodable_object_is_skipped_and_the_others_reconcile_after_a_restart() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "tenancy-decode").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut operator = Operator::start_with(
        &ns.name,
        &[
            "--metrics-addr",
            &metrics_addr,
            "--health-addr",
            "127.0.0.1:0",
        ],
    );
    let spec = json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1});
    for name in ["future", "broken"] {
        mds.create(&PostParams::default(), &model(name, spec.clone()))
            .await
            .expect("create");
        wait_for(&mds, name, "be Healthy", TIMEOUT, healthy).await;
    }
    operator.kill();

    // A newer CRD's phase (the downgrade case), and a spec no version of
    // this binary can read.
    rewrite_in_etcd(&ns.name, "future", |o| {
        o["status"]["phase"] = json!("Suspended")
    })
    .await;
    rewrite_in_etcd(&ns.name, "broken", |o| {
        o["spec"]["replicas"] = json!("many")
    })
    .await;
    let raw = kubectl(&[
        "-n",
        &ns.name,
        "get",
        "mdep",
        "future",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(String::from_utf8_lossy(&raw.stdout), "Suspended");

    operator.restart();
    // The others reconcile: the unknown phase is read and replaced...
    wait_for(&mds, "future", "be reconciled to Healthy", TIMEOUT, healthy).await;
    // ...and a new one comes up.
    mds.create(&PostParams::default(), &model("after", spec.clone()))
        .await
        .expect("create");
    wait_for(&mds, "after", "be Healthy", TIMEOUT, healthy).await;

    // The broken one is reported: an Event on it, a metric, a log line.
    warning_event(&client, &ns.name, "broken", "Undecodable", "", TIMEOUT).await;
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("model_operator_undecodable_objects_total 1"),
        "{metrics}"
    );
    assert!(operator.logs().contains("cannot decode"));
}

fn waiting_reason(pod: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
}

#[tokio::test]
async fn a_stray_pod_with_the_models_labels_neither_fails_a_rollout_nor_gets_traffic() {
    use k8s_openapi::api::core::v1::Pod;
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "tenancy-pods").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns.name);
    let services = Api::<Service>::namespaced(client.clone(), &ns.name);
    let _operator = Operator::start(&ns.name);
    let spec = |version: &str| json!({"model": {"version": version}, "server": {"image": "srv:1"}, "replicas": 1});
    mds.create(&PostParams::default(), &model("m", spec("1.0")))
        .await
        .expect("create");
    wait_for(&mds, "m", "be Healthy", TIMEOUT, healthy).await;

    // Created by hand with every label the next revision's pods will have
    // (as copied from a pod of the model), crash-looping.
    let stray: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {
            "app.kubernetes.io/instance": "m", "app.kubernetes.io/managed-by": "model-operator",
            "app.kubernetes.io/name": "m", "app.kubernetes.io/component": "model-server",
            "app.kubernetes.io/version": "2.0", "mlops.dev/revision": "2",
            "pod-template-hash": "abcdef", "mlops.dev/simulate": "crash-loop",
        }},
        "spec": {"containers": [{"name": "server", "image": "srv:1"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &stray)
        .await
        .expect("create the stray pod");
    wait_for(&pods, "stray", "crash-loop", TIMEOUT, |p| {
        waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
    })
    .await;

    mds.patch(
        "m",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"model": {"version": "2.0"}}})),
    )
    .await
    .expect("roll out 2.0");
    let md = wait_for(&mds, "m", "promote revision 2", TIMEOUT, |m| {
        healthy(m) && m.status.as_ref().and_then(|s| s.stable_revision) == Some(2)
    })
    .await;
    let history = &md.status.as_ref().unwrap().history;
    assert!(
        history
            .iter()
            .all(|e| e.outcome != model_operator::api::Outcome::RolledBack),
        "nothing rolled back: {history:?}"
    );
    // The stray pod still crash-loops, and the Service does not select it.
    let stray = pods.get("stray").await.expect("stray pod");
    assert_eq!(waiting_reason(&stray).as_deref(), Some("CrashLoopBackOff"));
    let selector = services
        .get("m")
        .await
        .expect("Service")
        .spec
        .and_then(|s| s.selector)
        .expect("selector");
    let selected = pods
        .list(&ListParams::default().labels(
            &model_operator::resources::labels::to_selector_string(&selector),
        ))
        .await
        .expect("list pods");
    let names: Vec<_> = selected.items.iter().map(ResourceExt::name_any).collect();
    assert!(!names.contains(&"stray".to_string()), "{names:?}");
    assert!(!names.is_empty(), "the model's own pods are selected");
}
