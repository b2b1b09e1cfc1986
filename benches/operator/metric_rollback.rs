//! Rollback latency after a failing metric check: a new version whose error
//! ratio in Prometheus is already over the gate's `max` when it rolls out.
//! Measured from the moment this program's Deployment watch sees the
//! template on the new revision (its pods start at once, and the failing
//! value is already queryable) to the moment it sees the template back on
//! the stable one. The figure therefore includes the analysis interval (2 s
//! here): a check runs on that schedule, not on every event.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use model_operator::api::{Outcome, Phase};
use serde_json::json;

use crate::convergence::delete_namespace;
use crate::report::{Row, percentile, sorted};
use crate::support::gates::{Gates, analysis, gated, setup};
use crate::support::prometheus;
use crate::support::setup::Setup;
use crate::support::{outcome, phase, stable};

const NAME: &str = "rollback, failing metric check: template on the bad revision → reverted";

pub async fn run(_client: &Client, rounds: usize) -> Row {
    eprintln!("bench: rollback latency over {rounds} metric-check failures");
    let s = match gated_setup(NAME, "bench-metric").await {
        Ok(s) => s,
        Err(skipped) => return skipped,
    };
    let mut rates: Vec<(String, f64)> = vec![("1.0".into(), 0.01)];
    s.create(gated("1.0", analysis(json!({}), 0.05, None), json!({})))
        .await;
    s.wait("promote 1.0", |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;

    let mut templates = watcher(
        Api::<Deployment>::namespaced(s.client.clone(), &s.ns.name),
        watcher::Config::default().fields("metadata.name=m"),
    )
    .applied_objects()
    .boxed();
    let mut samples = Vec::new();
    for round in 0..rounds {
        let version = format!("bad-{round}");
        rates.push((version.clone(), 0.30));
        serve(&s, &rates);
        s.scraped(&version, Some(0.30)).await;
        s.set_version(&version).await;
        let revision = round as i64 + 2;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut bad_since = None;
        while Instant::now() < deadline {
            let Ok(Some(Ok(d))) =
                tokio::time::timeout(Duration::from_secs(5), templates.next()).await
            else {
                continue;
            };
            match (model_operator::resources::revision_of(&d), bad_since) {
                (Some(r), None) if r == revision => bad_since = Some(Instant::now()),
                (Some(1), Some(t)) => {
                    samples.push(t.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                _ => {}
            }
        }
        if samples.len() != round + 1 {
            eprintln!("metric round {round}: no rollback observed within 120 s");
            break;
        }
        // The status catches up with the template; the next round starts
        // from a settled RolledBack.
        s.wait("record the rollback", |m| {
            outcome(m, revision) == Some(Outcome::RolledBack)
        })
        .await;
    }
    drop(templates);
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
    .data(json!({"rollouts": rounds, "measured": sorted.len(), "p50_ms": p50, "max_ms": max, "samples_ms": samples}))
}

/// The Setup of a metric-gate bench, with version 1.0 at a 1% error ratio
/// already scraped; the row to report instead when Prometheus is not
/// running.
pub async fn gated_setup(name: &'static str, prefix: &str) -> Result<Setup, Row> {
    if reqwest::get(format!("{}/-/ready", prometheus()))
        .await
        .is_err()
    {
        return Err(Row::new(
            name,
            "not measured: Prometheus is not running (make monitoring-up)",
        ));
    }
    let s = setup(prefix).await;
    serve(&s, &[("1.0".into(), 0.01)]);
    s.scraped("1.0", Some(0.01)).await;
    Ok(s)
}

/// The exporter serves these error ratios, by version.
pub fn serve(s: &Setup, rates: &[(String, f64)]) {
    let r: Vec<(&str, f64)> = rates.iter().map(|(v, x)| (v.as_str(), *x)).collect();
    s.error_rates(&r);
}
