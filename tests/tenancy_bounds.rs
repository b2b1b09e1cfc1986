//! Bounded status end to end (docs/security.md, "Bounded status"): a
//! ModelDeployment whose spec is as long as the schema allows everywhere
//! the status copies from, after 100 real rollouts (every other one rolled
//! back by all 20 of its metric gates, with alerts), keeps its status under
//! the 512 KiB ceiling, and its 100th rollout is still recorded (a status
//! the API server refused would stop that).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use model_operator::api::{Outcome, Phase};
use serde_json::{Value, json};
use support::gates::alertmanager;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);
const CEILING: usize = 512 * 1024;
const ROLLOUTS: i64 = 100;

/// Model version `n`, 63 characters (the schema's limit).
fn version(n: i64) -> String {
    format!("{n:0>63}")
}

/// The analysis with 20 gates, each with a 63-character name and a
/// 4,096-character query (a PromQL comment pads it). `max` below 1 fails
/// every gate, above passes.
fn analysis(max: f64) -> Value {
    let metrics: Vec<Value> = (0..20)
        .map(|i| {
            let mut query = format!("vector(1) # gate {i} ");
            query.push_str(&"q".repeat(4096 - query.len()));
            json!({"name": format!("gate-{i:0>58}"), "query": query, "max": max})
        })
        .collect();
    json!({
        "prometheus": {"address": prometheus(), "timeoutSeconds": 5},
        "interval": "1s",
        "bakeTime": "0s",
        "failureLimit": 0,
        "metrics": metrics,
    })
}

fn spec(n: i64) -> Value {
    let failing = n % 2 == 0;
    json!({
        "model": {
            "version": version(n),
            "uri": format!("s3://{}", "u".repeat(2043)),
            "format": "f".repeat(63),
        },
        "server": {"image": format!("registry.example/{}:1", "i".repeat(493))},
        "replicas": 1,
        "revisionHistoryLimit": 100,
        "rollout": {"analysis": analysis(if failing { 0.5 } else { 2.0 })},
        "alerts": {"alertmanager": {"url": alertmanager()}},
    })
}

#[tokio::test]
async fn the_worst_case_status_stays_under_the_ceiling_after_100_rollouts() {
    let s = Setup::new("bounds").await;
    s.create(spec(1)).await;
    for n in 1..=ROLLOUTS {
        if n > 1 {
            s.set(spec(n)).await;
        }
        let expected = match n % 2 {
            0 => Outcome::RolledBack,
            _ => Outcome::Stable,
        };
        let what = format!("rollout {n} ends {expected:?}");
        wait_for(&s.mds, "m", &what, TIMEOUT, |m| {
            let status = m.status.as_ref();
            status.and_then(|s| s.observed_generation) == m.metadata.generation
                && status.is_some_and(|s| {
                    s.history
                        .iter()
                        .any(|e| e.model_version == version(n) && e.outcome == expected)
                })
        })
        .await;
    }

    let m = s.mds.get("m").await.unwrap();
    let status = m.status.as_ref().unwrap();
    let size = serde_json::to_vec(status).unwrap().len();
    let object = serde_json::to_vec(&m).unwrap().len();
    println!(
        "status after {ROLLOUTS} rollouts: {size} bytes (ceiling {CEILING}), object {object} bytes, \
         {} history entries, {} alerts",
        status.history.len(),
        status.alerts.len()
    );
    assert!(size <= CEILING, "status is {size} bytes, over {CEILING}");
    assert_eq!(status.history.len(), 100, "the history limit, full");
    assert_eq!(status.phase, Some(Phase::RolledBack));
    let last = status.history.last().unwrap();
    assert_eq!(last.model_version, version(ROLLOUTS));
    assert_eq!(
        last.analysis.len(),
        20,
        "the newest entries keep their checks"
    );
    assert!(
        !status.alerts.is_empty(),
        "the rollback's alerts are in status"
    );
}
