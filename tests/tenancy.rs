//! Safe in a shared cluster (issue 11): no ModelDeployment can take over
//! what it does not own, nor use the operator's network position to reach
//! or read back what its author could not, nor stop the operator for the
//! other teams.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
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

/// Peak resident memory of a process, from /proc (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

fn analysis_message(md: &ModelDeployment) -> Option<String> {
    let analysis = md.status.as_ref()?.analysis.as_ref()?;
    Some(analysis.metrics.first()?.message.clone())
}

fn stopped(md: &ModelDeployment) -> bool {
    md.status
        .as_ref()
        .and_then(|s| s.analysis.as_ref())
        .is_some_and(|a| a.phase == model_operator::api::AnalysisPhase::Inconclusive)
}

/// The operator's peak memory while hostile endpoints offer it hundreds of
/// MiB stays under this (the chart's limit is 256Mi; before bodies were
/// capped, one 400 MB answer took it past 800 MiB).
const RSS_BOUND: u64 = 160 * 1024 * 1024;

#[tokio::test]
async fn misbehaving_endpoints_yield_only_classified_errors() {
    use support::fakes::{Misbehaving, Misbehaviour, SECRET_MARKER};
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "tenancy-egress").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);

    let html = Misbehaving::start(Misbehaviour::Html).await;
    // Where the redirect points: allowed too, so only "no redirects" keeps
    // the operator from going there.
    let redirect_target = Misbehaving::start(Misbehaviour::Html).await;
    let redirect = Misbehaving::start(Misbehaviour::Redirect(format!(
        "{}/api/v1/query",
        redirect_target.url()
    )))
    .await;
    let huge = Misbehaving::start(Misbehaviour::Huge {
        bytes: 400 * 1024 * 1024,
    })
    .await;
    let huge_alerts = Misbehaving::start(Misbehaviour::Huge {
        bytes: 400 * 1024 * 1024,
    })
    .await;
    let silent = Misbehaving::start(Misbehaviour::Silent).await;
    // Not on the admin's list: never contacted.
    let unlisted = Misbehaving::start(Misbehaviour::Html).await;

    let mut args = vec![
        "--metrics-addr".to_string(),
        "127.0.0.1:0".into(),
        "--health-addr".into(),
        "127.0.0.1:0".into(),
    ];
    for allowed in [
        &html,
        &redirect_target,
        &redirect,
        &huge,
        &huge_alerts,
        &silent,
    ] {
        args.push("--allowed-endpoint".into());
        args.push(allowed.url());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = Operator::start_with(&ns.name, &args);

    let cases = [
        (
            "html",
            &html,
            "HTTP 200, not a Prometheus API response",
            json!({}),
        ),
        (
            "redirect",
            &redirect,
            "HTTP 302 (redirects are not followed)",
            json!({}),
        ),
        (
            "huge",
            &huge,
            "response over 1048576 bytes",
            json!({"alertmanager": {"url": huge_alerts.url()}}),
        ),
        ("silent", &silent, "no answer within 2s", json!({})),
        (
            "unlisted",
            &unlisted,
            "not among the endpoints the operator may use",
            json!({}),
        ),
    ];
    for (name, endpoint, _, alerts) in &cases {
        let analysis = support::gates::analysis(
            json!({"prometheus": {"address": endpoint.url(), "timeoutSeconds": 2}}),
            0.05,
            None,
        );
        let md = model(
            name,
            json!({
                "model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1,
                "rollout": {"analysis": analysis}, "alerts": alerts,
            }),
        );
        mds.create(&PostParams::default(), &md)
            .await
            .expect("create ModelDeployment");
    }
    for (name, _, expected, _) in &cases {
        let md = wait_for(&mds, name, "stop its analysis", TIMEOUT, stopped).await;
        let message = analysis_message(&md).unwrap_or_default();
        assert!(
            message.contains(expected),
            "{name}: the check says {expected:?}: {message}"
        );
    }
    // The huge alert endpoint was offered 400 MiB too.
    // The failed alert delivery is logged, classified.
    operator
        .wait_log("response over 65536 bytes", TIMEOUT)
        .await;

    assert_eq!(redirect_target.hits(), 0, "no redirect was followed");
    assert_eq!(
        unlisted.hits(),
        0,
        "an endpoint off the list is never contacted"
    );
    assert!(huge.hits() > 0 && huge_alerts.hits() > 0);

    // Nothing the endpoints said is anywhere: status, Events, logs.
    for (name, ..) in &cases {
        let md = mds.get(name).await.expect("get");
        let text = serde_json::to_string(&md).unwrap();
        assert!(!text.contains(SECRET_MARKER), "{name}'s object: {text}");
        assert!(!text.contains("<html"), "{name}'s object: {text}");
    }
    let events = Api::<Event>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("events");
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(SECRET_MARKER), "events: {text}");
    assert!(
        !operator.logs().contains(SECRET_MARKER),
        "the operator's log"
    );

    let peak = peak_rss(operator.pid().expect("running"));
    assert!(
        peak < RSS_BOUND,
        "peak RSS {} MiB while offered 2 x 400 MiB (bound {} MiB)",
        peak / (1024 * 1024),
        RSS_BOUND / (1024 * 1024)
    );
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

#[tokio::test]
async fn secrets_are_read_only_when_labelled_and_tokens_never_go_over_plain_http() {
    use k8s_openapi::api::core::v1::Secret;
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "tenancy-secrets").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns.name);
    let _operator = Operator::start(&ns.name);
    let (port, seen, task) = support::fakes::fake_prometheus("0.01").await;
    for (name, labels) in [
        // Another team's Secret, or one never meant for the operator.
        ("unlabelled", json!({})),
        (
            "labelled",
            json!({"mlops.dev/secret-type": "prometheus-token"}),
        ),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "stringData": {"token": "t0k3n-v4lue"},
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create Secret");
    }
    let cases = [
        (
            "unlabelled",
            "Secret unlabelled lacks the label mlops.dev/secret-type=prometheus-token",
        ),
        ("labelled", "a bearer token is never sent over plain http"),
    ];
    for (secret, _) in &cases {
        let prometheus = json!({
            "address": format!("http://127.0.0.1:{port}"), "timeoutSeconds": 2,
            "bearerTokenSecretRef": {"name": secret, "key": "token"},
        });
        let analysis = support::gates::analysis(json!({"prometheus": prometheus}), 0.05, None);
        let md = model(
            secret,
            json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1,
                "rollout": {"analysis": analysis}}),
        );
        mds.create(&PostParams::default(), &md)
            .await
            .expect("create");
    }
    for (name, expected) in &cases {
        let md = wait_for(&mds, name, "stop its analysis", TIMEOUT, stopped).await;
        let message = analysis_message(&md).unwrap_or_default();
        assert!(message.contains(expected), "{name}: {message}");
    }
    let headers = seen.lock().unwrap().clone();
    assert!(
        headers.iter().all(|h| !h.contains("t0k3n")),
        "the token was sent: {headers:?}"
    );
    task.abort();
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

/// Series on the operator's `/metrics` that name `namespace`.
fn ready(md: &ModelDeployment) -> bool {
    condition(md, "Ready").is_some_and(|(status, ..)| status == "True")
}

/// Promoted on metric checks that passed: the analysis ran to its end.
fn promoted_on_passing_checks(md: &ModelDeployment) -> bool {
    ready(md)
        && stable(md) == Some(1)
        && history_entry(md, 1).is_some_and(|e| {
            !e.analysis.is_empty()
                && e.analysis
                    .iter()
                    .all(|c| c.verdict == model_operator::api::Verdict::Pass)
        })
}

#[tokio::test]
async fn hanging_prometheus_rounds_leave_workers_for_the_others() {
    use support::fakes::{Misbehaving, Misbehaviour};
    let client = client().await;
    ensure_crd(&client).await;
    // The team whose Prometheus never answers, and another team.
    let ns = TestNamespace::new(&client, "tenancy-fair").await;
    let other = TestNamespace::new(&client, "tenancy-fair-other").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let theirs = Api::<ModelDeployment>::namespaced(client.clone(), &other.name);
    // As many workers per watched namespace as the hanging team may run
    // rounds: rounds awaited on a worker would hold every worker of its
    // namespace. One slot of the pool is left for the other team.
    let operator = Operator::start_with(
        &ns.name,
        &[
            "--namespace",
            &other.name,
            "--concurrency",
            "2",
            "--analysis-pool",
            "3",
            "--analysis-per-namespace",
            "2",
        ],
    );
    let silent = Misbehaving::start(Misbehaviour::Silent).await;
    let analysis = support::gates::analysis(
        json!({"prometheus": {"address": silent.url(), "timeoutSeconds": 60}, "inconclusiveLimit": 100}),
        0.05,
        None,
    );
    for i in 0..24 {
        let md = model(
            &format!("hangs{i}"),
            json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1,
                "rollout": {"analysis": analysis.clone()}}),
        );
        mds.create(&PostParams::default(), &md)
            .await
            .expect("create");
    }
    // The namespace's share of rounds hangs on the endpoint, for 60 s each.
    eventually("two rounds hang on the endpoint", TIMEOUT, || async {
        silent.hits() >= 2
    })
    .await;

    // The other team's ModelDeployment, with metric gates on a Prometheus
    // that answers, is analysed and promoted meanwhile.
    let (port, _seen, prometheus) = support::fakes::fake_prometheus("0.01").await;
    let gated = support::gates::analysis(
        json!({"prometheus": {"address": format!("http://127.0.0.1:{port}"), "timeoutSeconds": 2}}),
        0.05,
        None,
    );
    theirs
        .create(
            &PostParams::default(),
            &model(
                "healthy",
                json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1,
                    "rollout": {"analysis": gated}}),
            ),
        )
        .await
        .expect("create");
    // And one without gates in the hanging team's own namespace, whose
    // share of rounds is used up: it needs nothing but a worker.
    mds.create(
        &PostParams::default(),
        &model(
            "plain",
            json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1}),
        ),
    )
    .await
    .expect("create");
    wait_for(
        &theirs,
        "healthy",
        "be Ready on passing checks while 24 others hang",
        TIMEOUT,
        promoted_on_passing_checks,
    )
    .await;
    wait_for(
        &mds,
        "plain",
        "be Ready beside 24 hanging rounds",
        TIMEOUT,
        ready,
    )
    .await;
    // No round of the hanging team has ended yet: its two rounds still
    // wait on the endpoint, and every reconcile above ran meanwhile. (Were
    // rounds awaited on the workers, both of this namespace's workers would
    // be held until a round timed out and was judged Inconclusive; only
    // then could `plain` be reconciled at all.)
    let checks =
        |verdict: &str| format!("model_operator_analysis_checks_total{{verdict=\"{verdict}\"}}");
    let passed = operator.metric(&checks("Pass")).await.expect("/metrics");
    assert!(passed > 0.0, "the other team's checks are counted");
    let ended = operator
        .metric(&checks("Inconclusive"))
        .await
        .expect("/metrics");
    assert_eq!(ended, 0.0, "a hanging round had to end first");
    // At most the namespace's share of rounds was ever waiting on the
    // endpoint.
    assert_eq!(silent.hits(), 2, "rounds hung at once");
    prometheus.abort();
}
