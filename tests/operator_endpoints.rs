//! The operator's own endpoints: `/healthz`, `/readyz` and `/metrics`, the
//! last scraped by the real Prometheus.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::json;
use support::*;

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test]
async fn probes_and_metrics_are_served_and_scraped() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "endpoints").await;
    let (metrics_port, health_port) = (free_port(), free_port());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let health_addr = format!("127.0.0.1:{health_port}");
    let _operator = Operator::start_with(
        &ns.name,
        &[
            "--metrics-addr",
            &metrics_addr,
            "--health-addr",
            &health_addr,
        ],
    );

    eventually("both probes pass", Duration::from_secs(30), || async {
        let healthz = get(&format!("http://{health_addr}/healthz")).await;
        let readyz = get(&format!("http://{health_addr}/readyz")).await;
        let passed =
            healthz.as_ref().map(|r| r.0) == Some(200) && readyz.as_ref().map(|r| r.0) == Some(200);
        if passed {
            Ok(())
        } else {
            Err((healthz, readyz))
        }
    })
    .await;

    // A rollout that passes and one that is rolled back.
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
        "spec": {"model": {"version": "1"}, "server": {"image": "srv:1"}},
    }))
    .unwrap();
    mds.create(&PostParams::default(), &md).await.unwrap();
    wait_for(&mds, "m", "be Healthy", Duration::from_secs(90), |m| {
        m.status.as_ref().and_then(|s| s.phase) == Some(Phase::Healthy)
    })
    .await;
    let bad = json!({"spec": {"model": {"version": "2"}, "podMetadata": {"labels": {"mlops.dev/simulate": "crash-loop"}}}});
    mds.patch("m", &PatchParams::default(), &Patch::Merge(bad))
        .await
        .unwrap();
    wait_for(
        &mds,
        "m",
        "roll revision 2 back",
        Duration::from_secs(90),
        |m| outcome(m, 2) == Some(Outcome::RolledBack),
    )
    .await;

    let (status, text) = get(&format!("http://{metrics_addr}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);
    for expected in [
        "model_operator_reconciles_total{outcome=\"ok\"}",
        "model_operator_reconcile_duration_seconds_count",
        "model_operator_revision_outcomes_total{outcome=\"Stable\",reason=\"RolloutComplete\"} 1",
        "model_operator_revision_outcomes_total{outcome=\"RolledBack\",reason=\"CrashLoopBackOff\"} 1",
    ] {
        assert!(
            text.contains(expected),
            "/metrics lacks {expected}:\n{text}"
        );
    }

    // The real Prometheus scrapes it.
    let job = format!("operator-{}", ns.name);
    let _target = ScrapeTarget::add(&job, metrics_port, json!({}));
    let query =
        format!("model_operator_revision_outcomes_total{{job=\"{job}\",outcome=\"RolledBack\"}}");
    prometheus_sees(&query, Some(1.0), Duration::from_secs(60)).await;
}
