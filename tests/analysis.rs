//! Metric gates end to end: the real Prometheus scrapes a test exporter whose
//! per-version values each test sets; the real Alertmanager and a webhook
//! sink receive the alerts. Setup: tests/support/gates.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use model_operator::api::{AnalysisPhase, Outcome, Phase, Verdict};
use serde_json::json;
use support::fakes::{WebhookSink, fake_prometheus};
use support::gates::*;
use support::*;

#[tokio::test]
async fn a_version_with_a_higher_error_rate_is_rolled_back_and_alerted() {
    let s = setup("analysis-rollback").await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.30)]);
    s.scraped("2.0", Some(0.30)).await;
    let sink = WebhookSink::start().await;
    sink.install_secret(&s.client, &s.ns.name, "model-alerts")
        .await;
    s.create(gated("1.0",
        analysis(json!({}), 0.05, None),
        json!({"alertmanager": {"url": alertmanager()}, "webhook": {"urlSecretRef": {"name": "model-alerts", "key": "url"}}})))
    .await;
    s.wait("promote 1.0", |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;

    s.set_version("2.0").await;
    let m = s
        .wait("roll 2.0 back on its error rate", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    s.wait_template(1).await;
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "AnalysisFailed");
    let resolved_query = format!(
        r#"max(model_error_ratio{{namespace="{}",model_version="2.0"}})"#,
        s.ns.name
    );
    for part in ["error-rate", "0.3 is above 0.05", resolved_query.as_str()] {
        assert!(
            entry.message.contains(part),
            "history message {:?} lacks {part:?}",
            entry.message
        );
    }
    let seen = entry
        .analysis
        .iter()
        .find(|c| c.name == "error-rate")
        .expect("checks kept in history");
    assert_eq!((seen.verdict, seen.value), (Verdict::Fail, Some(0.3)));
    assert_eq!(stable(&s.mds.get("m").await.unwrap()), Some(1));

    let events = s.events().await;
    assert!(
        events.iter().any(|(reason, note)| reason == "RolledBack"
            && note.contains("error-rate")
            && note.contains("0.3")),
        "no RolledBack event naming the metric and value: {events:#?}"
    );

    // Alertmanager, with labels a routing tree can use.
    let alert = s
        .wait_alert(
            json!({"alertname": "ModelRolledBack", "modeldeployment": "m", "revision": "2"}),
        )
        .await;
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["model_version"], "2.0");
    assert_eq!(alert["labels"]["metric"], "error-rate");
    assert_eq!(alert["labels"]["reason"], "AnalysisFailed");
    assert_eq!(alert["labels"]["model"], "m");

    // The webhook got the same alert as JSON; its URL (with a token) is
    // never logged.
    let body = sink
        .wait_for("a firing ModelRolledBack", |b| {
            webhook_alert(b, "firing", "ModelRolledBack").is_some()
        })
        .await;
    let sent = webhook_alert(&body, "firing", "ModelRolledBack").unwrap();
    assert_eq!(sent["labels"]["metric"], "error-rate");
    assert_eq!(sent["labels"]["namespace"], s.ns.name.as_str());
    assert!(
        sent["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("0.3 is above 0.05")
    );

    // Going back to the stable version clears the condition: resolved.
    s.set_version("1.0").await;
    s.wait("serve 1.0 again", |m| phase(m) == Some(Phase::Healthy))
        .await;
    sink.wait_for("a resolved ModelRolledBack", |b| {
        webhook_alert(b, "resolved", "ModelRolledBack").is_some()
    })
    .await;
    s.wait_alert_resolved(json!({"alertname": "ModelRolledBack", "modeldeployment": "m"}))
        .await;
    let logs = s.operators[0].logs();
    assert!(
        !logs.contains("s3cr3t"),
        "the webhook URL leaked into the logs"
    );
}

#[tokio::test]
async fn relative_regression_against_the_stable_revision_rolls_back_and_equal_values_promote() {
    let s = setup("analysis-relative").await;
    s.error_rates(&[("1.0", 0.02), ("2.0", 0.02), ("3.0", 0.03)]);
    s.scraped("3.0", Some(0.03)).await;
    // 0.03 is well within the absolute bound; only the +50% against the
    // stable revision's 0.02 breaks the 20% relative bound.
    s.create(gated(
        "1.0",
        analysis(json!({}), 0.05, Some(20.0)),
        json!(null),
    ))
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    s.set_version("2.0").await;
    let m = s
        .wait("promote 2.0 (same value as 1.0)", |m| stable(m) == Some(2))
        .await;
    let entry = history_entry(&m, 2).unwrap();
    let status = m.status.unwrap();
    let check = entry
        .analysis
        .iter()
        .find(|c| c.name == "error-rate")
        .expect("checks in history");
    assert_eq!(
        (check.verdict, check.value, check.baseline),
        (Verdict::Pass, Some(0.02), Some(0.02))
    );
    assert!(
        check.bound.contains("baseline 0.02 +20%"),
        "{}",
        check.bound
    );
    // Promoted only once the bake time had passed after every pod ran it.
    let analysis = status.analysis.as_ref().expect("analysis status");
    assert_eq!(analysis.revision, 2);
    let baked_from = analysis.bake_started_at.as_ref().expect("bake start").0;
    let promoted = entry.promoted_at.as_ref().expect("promotion time").0;
    assert!(
        promoted.as_millisecond() - baked_from.as_millisecond() >= 4_000,
        "promoted at {promoted}, before the 4s bake time from {baked_from} was over"
    );

    s.set_version("3.0").await;
    let m = s
        .wait("roll 3.0 back on the relative bound", |m| {
            outcome(m, 3) == Some(Outcome::RolledBack)
        })
        .await;
    s.wait_template(2).await;
    let entry = history_entry(&m, 3).unwrap();
    assert!(
        entry
            .message
            .contains("0.03 is above 0.024 (baseline 0.02 +20%)"),
        "{}",
        entry.message
    );
    assert_eq!(stable(&m), Some(2));
}

#[tokio::test]
async fn no_data_stops_the_rollout_without_promotion_until_retried() {
    let s = setup("analysis-nodata").await;
    s.error_rates(&[("1.0", 0.01)]);
    s.scraped("1.0", Some(0.01)).await;
    s.create(gated(
        "1.0",
        analysis(json!({}), 0.05, None),
        json!({"alertmanager": {"url": alertmanager()}}),
    ))
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    // Version 2.0 has no series at all.
    s.set_version("2.0").await;
    let m = s
        .wait("stop on missing data", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.analysis.as_ref())
                .is_some_and(|a| a.revision == 2 && a.phase == AnalysisPhase::Inconclusive)
        })
        .await;
    assert_eq!(phase(&m), Some(Phase::Paused));
    assert_eq!(stable(&m), Some(1), "never promoted on missing data");
    assert_eq!(
        outcome(&m, 2),
        Some(Outcome::Progressing),
        "not rolled back either"
    );
    let analysis = m.status.as_ref().unwrap().analysis.clone().unwrap();
    assert!(
        analysis.metrics[0].message.contains("no data"),
        "{:?}",
        analysis.metrics[0]
    );
    s.wait_template(2).await;
    s.wait_alert(json!({"alertname": "ModelAnalysisInconclusive", "modeldeployment": "m", "revision": "2", "metric": "error-rate"}))
        .await;

    // Data arrives; the analysis stays stopped until a person retries it.
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = s.mds.get("m").await.unwrap();
    assert_eq!(
        stable(&m),
        Some(1),
        "a stopped analysis does not resume by itself"
    );
    s.mds
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"mlops.dev/retry": "1"}}})),
        )
        .await
        .unwrap();
    s.wait("promote 2.0 after the retry", |m| stable(m) == Some(2))
        .await;
    s.wait_alert_resolved(
        json!({"alertname": "ModelAnalysisInconclusive", "modeldeployment": "m"}),
    )
    .await;
}

#[tokio::test]
async fn prometheus_down_is_inconclusive_and_never_promotes() {
    let s = setup("analysis-promdown").await;
    // Nothing listens on this port: every query fails to connect.
    let dead = format!("http://127.0.0.1:{}", free_port());
    // The alert channel is down too: that must not hold anything up.
    let dead_alertmanager = format!("http://127.0.0.1:{}", free_port());
    s.create(gated(
        "1.0",
        analysis(
            json!({"prometheus": {"address": dead, "timeoutSeconds": 1}}),
            0.05,
            None,
        ),
        json!({"alertmanager": {"url": dead_alertmanager}}),
    ))
    .await;
    let m = s
        .wait("stop on Prometheus errors", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.analysis.as_ref())
                .is_some_and(|a| a.phase == AnalysisPhase::Inconclusive)
        })
        .await;
    let status = m.status.as_ref().unwrap();
    assert_eq!(
        status.stable_revision, None,
        "never promoted while Prometheus is down"
    );
    assert_eq!(status.phase, Some(Phase::Paused));
    let check = &status.analysis.as_ref().unwrap().metrics[0];
    assert_eq!(check.verdict, Verdict::Inconclusive);
    assert!(
        check.message.contains("Prometheus gave no answer"),
        "{}",
        check.message
    );
    assert!(check.inconclusive > 2, "{check:?}");
    assert_eq!(outcome(&m, 1), Some(Outcome::Progressing));
    assert_eq!(
        status.alerts.first().map(|a| a.alertname.as_str()),
        Some("ModelAnalysisInconclusive")
    );
    // The failed delivery was counted, and reconciling went on regardless.
    let metrics_url = format!("http://127.0.0.1:{}/metrics", s.operators[0].metrics_port());
    eventually("a failed delivery is counted", TIMEOUT, || async {
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counted = text.contains(
            r#"model_operator_alert_deliveries_total{channel="alertmanager",result="error"}"#,
        );
        if counted { Ok(()) } else { Err(text) }
    })
    .await;
}

#[tokio::test]
async fn the_metric_gates_example_is_accepted_by_the_api_server() {
    assert_example_accepted("analysis-example", "config/examples/metric-gates.yaml").await;
}

#[tokio::test]
async fn the_bearer_token_from_a_secret_is_sent_and_never_logged() {
    // The fake Prometheus speaks plain http: the admin allows tokens there.
    let s = setup_with("analysis-token", &["--allow-insecure-tokens"]).await;
    let (port, seen, task) = fake_prometheus("0.01").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "prometheus-token", "labels": {"mlops.dev/secret-type": "prometheus-token"}},
        "stringData": {"token": "t0k3n-v4lue\n"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(s.client.clone(), &s.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let prometheus = json!({"address": format!("http://127.0.0.1:{port}"), "bearerTokenSecretRef": {"name": "prometheus-token", "key": "token"}});
    s.create(gated(
        "1.0",
        analysis(json!({"prometheus": prometheus}), 0.05, None),
        json!(null),
    ))
    .await;
    s.wait("promote 1.0 on the token-protected answers", |m| {
        stable(m) == Some(1)
    })
    .await;
    let headers = seen.lock().unwrap().clone();
    assert!(!headers.is_empty());
    assert!(
        headers.iter().all(|h| h == "Bearer t0k3n-v4lue"),
        "{headers:?}"
    );
    assert!(
        !s.operators[0].logs().contains("t0k3n"),
        "the token leaked into the logs"
    );
    task.abort();
}
