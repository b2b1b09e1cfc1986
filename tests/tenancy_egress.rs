//! Safe in a shared cluster (issue 11), over the network: no ModelDeployment
//! can use the operator's network position to reach or read back what its
//! author could not (misbehaving endpoints, Secrets, plain-HTTP tokens), nor
//! stop the operator for the other teams by a Prometheus that hangs. In the
//! cluster: tests/tenancy.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use model_operator::api::ModelDeployment;
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

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
    for allowed in [&html, &redirect_target, &redirect, &huge, &silent] {
        args.push("--allowed-prometheus".into());
        args.push(allowed.url());
    }
    args.push("--allowed-alertmanager".into());
    args.push(huge_alerts.url());
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
            "not among the endpoints the operator may send Prometheus queries to",
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

/// Ready, as the condition says.
fn ready(md: &ModelDeployment) -> bool {
    condition(md, "Ready").is_some_and(|(status, ..)| status == "True")
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
    support::gates::create_hanging(&mds, &silent.url(), 24).await;
    // The namespace's share of rounds hangs on the endpoint, for 60 s each.
    eventually("two rounds hang on the endpoint", TIMEOUT, || async {
        silent.hits() >= 2
    })
    .await;

    // The other team's ModelDeployment, with metric gates on a Prometheus
    // that answers, is analysed and promoted meanwhile.
    let (spec, prometheus) = support::gates::passing_gates().await;
    theirs
        .create(&PostParams::default(), &model("healthy", spec))
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
