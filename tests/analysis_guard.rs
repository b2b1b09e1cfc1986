//! The post-promotion guard end to end: a Stable revision keeps being
//! checked against the real Prometheus; a breach alerts through the real
//! Alertmanager, and rolls back when asked. Setup: tests/support/gates.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use model_operator::api::{Outcome, Phase};
use serde_json::json;
use support::gates::*;
use support::*;

#[tokio::test]
async fn a_post_promotion_breach_alerts_and_rolls_back_when_asked() {
    let s = setup("analysis-guard").await;
    let target = ScrapeTarget::add(
        &format!("operator-{}", s.ns.name),
        s.operators[0].metrics_port(),
        json!({}),
    );
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    s.create(gated(
        "1.0",
        analysis(json!({}), 0.05, None),
        json!({"alertmanager": {"url": alertmanager()}}),
    ))
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    // Action Alert: the breach is reported, nothing is rolled back.
    s.error_rates(&[("1.0", 0.2), ("2.0", 0.01)]);
    let m = s
        .wait("report the breach", |m| phase(m) == Some(Phase::Degraded))
        .await;
    let degraded = m
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(degraded.reason, "MetricBreach");
    assert!(
        degraded.message.contains("0.2 is above 0.05"),
        "{}",
        degraded.message
    );
    s.wait_alert(json!({"alertname": "ModelMetricBreach", "modeldeployment": "m", "revision": "1", "metric": "error-rate", "severity": "critical"}))
        .await;
    // The last value of the metric is on the operator's /metrics, scraped by
    // the real Prometheus.
    let query = format!(
        r#"model_operator_analysis_value{{namespace="{}",modeldeployment="m",metric="error-rate"}}"#,
        s.ns.name
    );
    prometheus_sees(&query, Some(0.2), TIMEOUT).await;
    drop(target);
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.wait("clear the breach", |m| phase(m) == Some(Phase::Healthy))
        .await;
    s.wait_alert_resolved(json!({"alertname": "ModelMetricBreach", "modeldeployment": "m"}))
        .await;

    // Action Rollback: 2.0 is promoted, then breaches; 1.0 comes back.
    s.set(json!({"rollout": {"analysis": {"postPromotion": {"action": "Rollback"}}}, "model": {"version": "2.0"}})).await;
    s.wait("promote 2.0", |m| stable(m) == Some(2)).await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.2)]);
    let m = s
        .wait("roll the breaching 2.0 back", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    s.wait_template(1).await;
    let status = m.status.as_ref().unwrap();
    assert_eq!(status.stable_revision, Some(1));
    let two = history_entry(&m, 2).unwrap();
    assert_eq!(two.reason, "PostPromotionBreach");
    let one = history_entry(&m, 1).unwrap();
    assert_eq!(
        (one.outcome, one.reason.as_str()),
        (Outcome::Stable, "Reinstated")
    );
    assert_eq!(status.phase, Some(Phase::RolledBack));
    s.wait_alert(json!({"alertname": "ModelRolledBack", "modeldeployment": "m", "revision": "2", "reason": "PostPromotionBreach"}))
        .await;
}
