//! How long after its pod a model's status says Ready: where an operator
//! run's time above the floor goes, the last hop (watch the Deployment,
//! write status) or the whole pipeline being slower.
//!
//! Taken from the objects' own condition times (whole seconds), read once
//! after the run: measuring costs the run being measured nothing.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use model_operator::api::ModelDeployment;
use serde_json::json;

use crate::convergence::median_and_spread;
use crate::report::Row;

/// Per model: the Deployment's `Available=True` → the ModelDeployment's
/// `Ready=True`, in seconds; and from the first model's creation to the
/// last Deployment's `Available=True`.
pub struct Lags {
    pub per_model: Vec<f64>,
    pub last_available_s: f64,
    /// The slowest few, for a look at what held them: name, and seconds
    /// after the first create to its creation, its Deployment's
    /// `Available` and its `Ready`.
    pub slowest: Vec<serde_json::Value>,
}

/// How many of the slowest models the JSON report details.
const SLOWEST: usize = 5;

pub async fn measure(client: &Client, namespace: &str) -> Option<Lags> {
    let lp = ListParams::default();
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await
        .ok()?;
    let models = Api::<ModelDeployment>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await
        .ok()?;
    let available: HashMap<String, Timestamp> = deployments
        .items
        .iter()
        .filter_map(|d| Some((d.name_any(), available_since(d)?)))
        .collect();
    let first_created = models
        .items
        .iter()
        .filter_map(|m| m.creation_timestamp())
        .map(|t| t.0)
        .min()?;
    let since_start = |t: Timestamp| t.duration_since(first_created).as_secs_f64();
    let mut timed: Vec<(f64, serde_json::Value)> = models
        .items
        .iter()
        .filter_map(|m| {
            let ready = ready_since(m)?;
            let pods = *available.get(&m.name_any())?;
            let created = m.creation_timestamp()?.0;
            let detail = json!({"name": m.name_any(), "created_s": since_start(created),
                                "available_s": since_start(pods), "ready_s": since_start(ready)});
            Some((ready.duration_since(pods).as_secs_f64(), detail))
        })
        .collect();
    timed.sort_by(|a, b| b.0.total_cmp(&a.0));
    let last_available = *available.values().max()?;
    Some(Lags {
        per_model: timed.iter().map(|(lag, _)| *lag).collect(),
        last_available_s: since_start(last_available),
        slowest: timed.into_iter().take(SLOWEST).map(|(_, d)| d).collect(),
    })
}

pub fn available_since(d: &Deployment) -> Option<Timestamp> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Available" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

pub fn ready_since(m: &ModelDeployment) -> Option<Timestamp> {
    m.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

/// Nearest-rank quantiles of the lags: median, p90, p99, max.
fn quantiles(lags: &[f64]) -> [f64; 4] {
    let sorted = crate::report::sorted(lags.to_vec());
    [0.5, 0.9, 0.99, 1.0].map(|q| crate::report::percentile(&sorted, q))
}

/// "median 1 s, p90 3 s, p99 5 s, max 7 s".
pub fn describe(lags: &[f64]) -> String {
    let [median, p90, p99, max] = quantiles(lags);
    format!("median {median:.0} s, p90 {p90:.0} s, p99 {p99:.0} s, max {max:.0} s")
}

/// The target for the lag: p99 ≤ 2 s and max ≤ 5 s.
pub fn within_target(lags: &[f64]) -> bool {
    let [_, _, p99, max] = quantiles(lags);
    p99 <= 2.0 && max <= 5.0
}

pub const TARGET: &str = "p99 ≤ 2 s, max ≤ 5 s";

/// The row for all operator runs at size `n`.
pub fn row(n: usize, runs: &[&Lags]) -> Row {
    let per_model: Vec<f64> = runs
        .iter()
        .flat_map(|l| l.per_model.iter().copied())
        .collect();
    let last: Vec<f64> = runs.iter().map(|l| l.last_available_s).collect();
    let what = format!("N={n}: operator runs, Deployment Available → ModelDeployment Ready");
    if per_model.is_empty() || last.is_empty() {
        return Row::new(what, "not measured: the objects could not be listed");
    }
    let (_, last_text) = median_and_spread(&last, " s");
    let over_5s = per_model.iter().filter(|lag| **lag > 5.0).count();
    let slowest: Vec<&serde_json::Value> = runs.iter().flat_map(|l| &l.slowest).collect();
    Row::new(
        what,
        format!(
            "{} per model, {over_5s} of {} over 5 s; last Deployment Available {last_text} after the first create",
            describe(&per_model),
            per_model.len()
        ),
    )
    .target(TARGET, within_target(&per_model))
    .data(json!({"n": n, "models": per_model.len(), "over_5s": over_5s,
                 "p99_s": quantiles(&per_model)[2], "max_s": quantiles(&per_model)[3],
                 "last_available_s": last, "slowest": slowest}))
}
