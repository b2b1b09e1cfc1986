//! Canary abort latency: a canary held at a step whose error ratio in
//! Prometheus turns bad. Measured from the moment this program sees the bad
//! value in Prometheus (polled every 50 ms, so up to 50 ms late) to the
//! moment its watch sees the canary Deployment at 0 replicas. The figure
//! includes the analysis interval (2 s here): a check runs on that
//! schedule, not on every scrape.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::json;

use crate::convergence::delete_namespace;
use crate::metric_rollback::{gated_setup, serve};
use crate::report::{Row, percentile, sorted};
use crate::support::gates::{Gates, analysis};
use crate::support::prometheus_query;
use crate::support::{outcome, phase, stable};

const NAME: &str = "canary abort: bad value visible in Prometheus → canary at 0 replicas";

pub async fn run(_client: &Client, rounds: usize) -> Row {
    eprintln!("bench: canary abort latency over {rounds} regressions");
    let s = match gated_setup(NAME, "bench-canary").await {
        Ok(s) => s,
        Err(skipped) => return skipped,
    };
    let mut rates: Vec<(String, f64)> = vec![("1.0".into(), 0.01)];
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
        "spec": {
            "model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2,
            "rollout": {
                "strategy": "Canary",
                "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]},
                "analysis": analysis(json!({}), 0.05, None),
            },
        },
    }))
    .expect("manifest");
    s.create_md(&md).await;
    s.wait("promote 1.0", |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;

    let mut canaries = watcher(
        Api::<Deployment>::namespaced(s.client.clone(), &s.ns.name),
        watcher::Config::default().fields("metadata.name=m-canary"),
    )
    .applied_objects()
    .boxed();
    let mut samples = Vec::new();
    for round in 0..rounds {
        let version = format!("c{round}");
        rates.push((version.clone(), 0.01));
        serve(&s, &rates);
        s.scraped(&version, Some(0.01)).await;
        s.set_version(&version).await;
        let revision = round as i64 + 2;
        s.wait("hold the canary at its pause", |m| {
            m.status
                .as_ref()
                .and_then(|st| st.canary.as_ref())
                .is_some_and(|c| c.revision == revision && c.waiting_for_promotion)
        })
        .await;

        if let Some(last) = rates.last_mut() {
            last.1 = 0.30;
        }
        serve(&s, &rates);
        let query = format!(
            r#"max(model_error_ratio{{namespace="{}",model_version="{version}"}})"#,
            s.ns.name
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut visible = None;
        while Instant::now() < deadline {
            if prometheus_query(&query).await == Ok(Some(0.30)) {
                visible = Some(Instant::now());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(visible) = visible else {
            eprintln!("canary round {round}: Prometheus never showed the bad value");
            break;
        };
        while Instant::now() < deadline {
            let Ok(Some(Ok(d))) =
                tokio::time::timeout(Duration::from_secs(5), canaries.next()).await
            else {
                continue;
            };
            let replicas = d.spec.as_ref().and_then(|s| s.replicas);
            if model_operator::resources::revision_of(&d) == Some(revision) && replicas == Some(0) {
                samples.push(visible.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        if samples.len() != round + 1 {
            eprintln!("canary round {round}: no abort observed within 120 s");
            break;
        }
        s.wait("record the rollback", |m| {
            outcome(m, revision) == Some(Outcome::RolledBack)
        })
        .await;
    }
    drop(canaries);
    // Not strictly needed (the namespace goes), but leaves no paused
    // canary behind if deleting the namespace is slow.
    let _ = s
        .mds
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await;
    delete_namespace(&s.ns).await;
    let sorted = sorted(samples.clone());
    let (p50, max) = (
        percentile(&sorted, 0.5),
        sorted.last().copied().unwrap_or(f64::NAN),
    );
    Row::new(
        format!("{NAME} ({} of {rounds})", sorted.len()),
        format!("p50 {p50:.0} ms, max {max:.0} ms"),
    )
    .data(json!({"aborts": rounds, "measured": sorted.len(), "p50_ms": p50, "max_ms": max, "samples_ms": samples}))
}
