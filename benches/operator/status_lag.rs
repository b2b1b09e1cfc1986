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

fn available_since(d: &Deployment) -> Option<Timestamp> {
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

fn ready_since(m: &ModelDeployment) -> Option<Timestamp> {
    m.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

/// "median 1 s, p90 3 s, max 7 s".
fn describe(lags: &[f64]) -> String {
    let mut sorted = lags.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(i).copied().unwrap_or_default()
    };
    format!(
        "median {:.0} s, p90 {:.0} s, max {:.0} s",
        at(0.5),
        at(0.9),
        at(1.0)
    )
}

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
    .data(json!({"n": n, "models": per_model.len(), "over_5s": over_5s,
                 "last_available_s": last, "slowest": slowest}))
}
