//! Safe in a shared cluster, second round (issue 24), over the network:
//! outbound requests by purpose (a webhook cannot reach what the admin
//! allowed for Prometheus), queries scoped to their namespace, and fair
//! analysis slots. Every hostile case ends with the real local Prometheus
//! (started with `--web.enable-lifecycle`, so `POST /-/quit` would stop
//! it) still answering `/-/ready`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use model_operator::api::{ModelDeployment, Outcome};
use serde_json::json;
use support::fakes::WebhookSink;
use support::gates::{alertmanager, webhook_alert};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The attack `POST /-/quit` would be: the local Prometheus obeys it.
async fn assert_prometheus_would_quit() {
    assert_eq!(
        prometheus_flag("web.enable-lifecycle").await.as_deref(),
        Some("true"),
        "the local Prometheus must run with --web.enable-lifecycle (hack/monitoring.sh)"
    );
}

async fn assert_prometheus_up() {
    assert!(
        prometheus_ready().await,
        "the local Prometheus no longer answers /-/ready"
    );
}

/// Secret `name`, labelled for alert webhooks, holding `url`.
async fn webhook_secret(s: &Setup, name: &str, url: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"mlops.dev/secret-type": "alert-webhook"}},
        "stringData": {"url": url},
    }))
    .unwrap();
    Api::<Secret>::namespaced(s.client.clone(), &s.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the webhook Secret");
}

/// ModelDeployment `name`, alerting to the webhook in Secret `secret`:
/// revision 1 stable, then a revision 2 that crash-loops and is rolled
/// back, which fires ModelRolledBack.
async fn rolled_back_alerting_to(s: &Setup, name: &str, secret: &str) {
    let spec = json!({
        "model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1,
        "alerts": {"webhook": {"urlSecretRef": {"name": secret, "key": "url"}}},
    });
    s.create_named(name, spec).await;
    s.wait_named(name, "make revision 1 stable", |m| {
        outcome(m, 1) == Some(Outcome::Stable)
    })
    .await;
    s.patch_spec(name, version("2", Some("crash-loop"))).await;
    s.wait_named(name, "roll revision 2 back", rolled_back(2))
        .await;
}

/// A webhook URL under the prefix the admin allowed for Prometheus
/// (`<prometheus>/-/quit`, the attack measured in issue 24) is never
/// called when the model is rolled back; a webhook under the webhook list
/// is. With the purpose flags, and with the deprecated `--allowed-endpoint`
/// (which never covers webhooks).
#[tokio::test]
async fn a_webhook_under_the_prometheus_prefix_is_never_called() {
    assert_prometheus_would_quit().await;
    let sink = WebhookSink::start().await;
    let hooks = format!("http://127.0.0.1:{}/hooks", sink.port);
    let (prometheus, alertmanager) = (prometheus(), alertmanager());
    let cases: [(&str, Vec<&str>); 2] = [
        (
            "outbound-purpose",
            vec![
                "--allowed-prometheus",
                &prometheus,
                "--allowed-alertmanager",
                &alertmanager,
                "--allowed-webhook",
                &hooks,
            ],
        ),
        (
            "outbound-legacy",
            vec![
                "--allowed-endpoint",
                &prometheus,
                "--allowed-webhook",
                &hooks,
            ],
        ),
    ];
    for (prefix, flags) in cases {
        let s = Setup::builder(prefix).args(&flags).start().await;
        webhook_secret(&s, "quit", &format!("{prometheus}/-/quit")).await;
        sink.install_secret(&s.client, &s.ns.name, "honest").await;
        rolled_back_alerting_to(&s, "hostile", "quit").await;
        rolled_back_alerting_to(&s, "honest", "honest").await;
        // The honest webhook is delivered to, so deliveries do run...
        sink.wait_for("the honest ModelRolledBack", |b| {
            webhook_alert(b, "firing", "ModelRolledBack")
                .is_some_and(|a| a["labels"]["namespace"] == s.ns.name.as_str())
        })
        .await;
        // ...and the hostile one is refused by the operator, not sent.
        s.operators[0]
            .wait_log(
                "the address is not among the endpoints the operator may send alert webhooks to (--allowed-webhook",
                TIMEOUT,
            )
            .await;
        assert_prometheus_up().await;
    }
}

/// With no list for a purpose nothing is allowed for it, and status says
/// which flag and Helm value to set.
#[tokio::test]
async fn an_empty_prometheus_list_sends_no_query_and_says_what_to_set() {
    let (port, seen, task) = support::fakes::fake_prometheus("0.01").await;
    // Only webhooks are listed: Prometheus's list is empty.
    let s = Setup::builder("outbound-empty")
        .args(&["--allowed-webhook", "http://127.0.0.1:1/hooks"])
        .start()
        .await;
    let analysis = support::gates::analysis(
        json!({"prometheus": {"address": format!("http://127.0.0.1:{port}"), "timeoutSeconds": 2}}),
        0.05,
        None,
    );
    s.create(
        json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1,
        "rollout": {"analysis": analysis}}),
    )
    .await;
    let m = s
        .wait("say no Prometheus endpoint is allowed", |m| {
            first_check_message(m)
                .contains("--allowed-prometheus, Helm value outbound.allowedPrometheus")
        })
        .await;
    assert!(
        first_check_message(&m).contains("the admin allowed no endpoint"),
        "{}",
        first_check_message(&m)
    );
    assert!(seen.lock().unwrap().is_empty(), "a query was sent");
    task.abort();
    assert_prometheus_up().await;
}

fn first_check_message(m: &ModelDeployment) -> String {
    m.status
        .as_ref()
        .and_then(|s| s.analysis.as_ref())
        .and_then(|a| a.metrics.first())
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Six namespaces whose Prometheus never answers (three gated
/// ModelDeployments each, rounds of 60 s) fill the whole pool of analysis
/// slots (8, two per namespace). A seventh namespace's gated
/// ModelDeployment is still analysed and promoted before any hanging round
/// has ended: a namespace that runs no round gets a slot by its turn, from
/// a namespace running two, instead of a lottery after their timeouts.
#[tokio::test]
async fn six_namespaces_with_hanging_endpoints_do_not_delay_a_sevenths_promotion() {
    use support::fakes::{Misbehaving, Misbehaviour};
    let client = client().await;
    ensure_crd(&client).await;
    let mut hanging = Vec::new();
    for i in 0..6 {
        hanging.push(TestNamespace::new(&client, &format!("fair-hang{i}")).await);
    }
    let seventh = TestNamespace::new(&client, "fair-seventh").await;
    let mut args = vec![
        "--analysis-pool".to_string(),
        "8".into(),
        "--analysis-per-namespace".into(),
        "2".into(),
        "--namespace".into(),
        seventh.name.clone(),
    ];
    for ns in &hanging[1..] {
        args.extend(["--namespace".to_string(), ns.name.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = Operator::start_with(&hanging[0].name, &args);
    let mut silent = Vec::new();
    for ns in &hanging {
        let endpoint = Misbehaving::start(Misbehaviour::Silent).await;
        let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
        support::gates::create_hanging(&mds, &endpoint.url(), 3).await;
        silent.push(endpoint);
    }
    // Every slot of the pool hangs on those endpoints.
    eventually("the whole pool hangs", TIMEOUT, || async {
        let hits: usize = silent.iter().map(Misbehaving::hits).sum();
        if hits >= 8 { Ok(hits) } else { Err(hits) }
    })
    .await;

    let (spec, prometheus) = support::gates::passing_gates().await;
    let theirs = Api::<ModelDeployment>::namespaced(client.clone(), &seventh.name);
    theirs
        .create(&PostParams::default(), &model("gated", spec))
        .await
        .expect("create");
    wait_for(
        &theirs,
        "gated",
        "be promoted on passing checks while six namespaces hang",
        TIMEOUT,
        promoted_on_passing_checks,
    )
    .await;
    // Before any hanging round ended: the promotion waited for no timeout.
    let checks =
        |verdict: &str| format!("model_operator_analysis_checks_total{{verdict=\"{verdict}\"}}");
    let ended = operator
        .metric(&checks("Inconclusive"))
        .await
        .expect("/metrics");
    assert_eq!(ended, 0.0, "a hanging round had to end first");
    prometheus.abort();
    assert_prometheus_up().await;
}

/// With `--scope-queries-to-namespace`, a gate in namespace B that names
/// namespace A's series (`namespace="A"` written in its query) gets no data
/// from the real Prometheus, and is not promoted; the same gate run by an
/// operator without the setting sees A's value and promotes. A query that
/// does not parse is not sent, and status says so.
#[tokio::test]
async fn a_scoped_query_cannot_see_a_series_of_another_namespace() {
    use support::gates::{Gates, analysis};
    let a = Setup::builder("scope-a").exporter().start().await;
    a.error_rates(&[("1", 0.01)]);
    a.scraped("1", Some(0.01)).await;
    let theirs = format!(
        r#"max(model_error_ratio{{namespace="{}",model_version="1"}})"#,
        a.ns.name
    );
    let gate = |query: &str| {
        let mut spec = analysis(json!({}), 0.05, None);
        spec["metrics"][0]["query"] = json!(query);
        json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1,
            "rollout": {"analysis": spec}})
    };

    let unscoped = Setup::new("scope-off").await;
    unscoped.create(gate(&theirs)).await;
    unscoped
        .wait(
            "promote on the other namespace's value",
            promoted_on_passing_checks,
        )
        .await;

    let scoped = Setup::builder("scope-on")
        .args(&["--scope-queries-to-namespace"])
        .start()
        .await;
    scoped.create(gate(&theirs)).await;
    scoped.create_named("garbled", gate("sum(")).await;
    let m = scoped
        .wait("find no series", |m| {
            first_check_message(m).contains("the query returned no series")
        })
        .await;
    assert!(
        !promoted_on_passing_checks(&m),
        "promoted on another namespace's series"
    );
    scoped
        .wait_named("garbled", "refuse the query", |m| {
            first_check_message(m).contains("the query does not parse as PromQL, so it is not sent")
        })
        .await;
    // Still not promoted: missing data is never a pass.
    consistently("m is not promoted", Duration::from_secs(6), || async {
        let m = scoped.mds.get("m").await.expect("get m");
        !promoted_on_passing_checks(&m)
    })
    .await;
    assert_prometheus_up().await;
}
