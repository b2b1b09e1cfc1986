//! ModelDeployments the tests share, and what their status says.

use std::time::Duration;

use kube::Api;
use kube::api::PostParams;

use model_operator::api::{HistoryEntry, ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};

use super::wait_for;

/// The smallest valid ModelDeployment: model 1.0 on image srv:1.
pub fn minimal_model(name: &str) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
        "spec": {"model": {"version": "1.0"}, "server": {"image": "srv:1"}},
    }))
    .expect("ModelDeployment")
}

/// ModelDeployment `name` with this spec.
pub fn model(name: &str, spec: serde_json::Value) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("ModelDeployment")
}

/// Condition `type_` as (status, reason, message), when present.
pub fn condition(md: &ModelDeployment, type_: &str) -> Option<(String, String, String)> {
    md.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// How revision `revision` of `m` ended (or that it is still rolling out),
/// from its status history.
pub fn outcome(m: &ModelDeployment, revision: i64) -> Option<Outcome> {
    history_entry(m, revision).map(|e| e.outcome)
}

/// Revision `revision`'s entry in `m`'s status history.
pub fn history_entry(m: &ModelDeployment, revision: i64) -> Option<HistoryEntry> {
    m.status
        .as_ref()?
        .history
        .iter()
        .find(|e| e.revision == revision)
        .cloned()
}

pub fn phase(m: &ModelDeployment) -> Option<Phase> {
    m.status.as_ref()?.phase
}

/// The revision status calls stable.
pub fn stable(m: &ModelDeployment) -> Option<i64> {
    m.status.as_ref()?.stable_revision
}

/// The current, stable and update revisions status names.
pub fn revisions(m: &ModelDeployment) -> (Option<i64>, Option<i64>, Option<i64>) {
    let s = m.status.as_ref().expect("status");
    (s.current_revision, s.stable_revision, s.update_revision)
}

/// Status describes the latest spec.
pub fn settled(m: &ModelDeployment) -> bool {
    m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation
}

/// Healthy, serving `revision`, which is stable.
pub fn healthy_at(revision: i64) -> impl Fn(&ModelDeployment) -> bool {
    move |m| {
        phase(m) == Some(Phase::Healthy)
            && outcome(m, revision) == Some(Outcome::Stable)
            && m.status.as_ref().and_then(|s| s.current_revision) == Some(revision)
    }
}

/// `revision` was rolled back and status says so.
pub fn rolled_back(revision: i64) -> impl Fn(&ModelDeployment) -> bool {
    move |m| {
        phase(m) == Some(Phase::RolledBack) && outcome(m, revision) == Some(Outcome::RolledBack)
    }
}

/// A version of the model as a spec merge patch; `simulate` makes its pods
/// misbehave (the kwok pod labels), and its `null` removes the label a bad
/// version had.
pub fn version(v: &str, simulate: Option<&str>) -> Value {
    json!({"model": {"version": v}, "podMetadata": {"labels": {"mlops.dev/simulate": simulate}}})
}

/// The spec of a rolling `m`: 2 replicas on `srv:1`, one pod replaced at a
/// time, this progress deadline, and `first`'s fields (a `version` patch;
/// its nulls dropped).
pub fn rolling(first: Value, deadline: i32) -> Value {
    let mut spec = json!({"server": {"image": "srv:1"}, "replicas": 2,
        "rollout": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": deadline}});
    merge(&mut spec, without_nulls(first));
    spec
}

/// `patch` merged into `base`, as a JSON merge patch would (without
/// deleting).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => p
            .into_iter()
            .for_each(|(k, v)| merge(b.entry(k).or_insert(Value::Null), v)),
        (b, p) => *b = p,
    }
}

/// A merge patch's nulls removed, for creating an object from it.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Creates ModelDeployment `m` (version 1 on `srv:1`, 2 replicas, a 600 s
/// progress deadline) and waits until revision 1 is stable.
pub async fn create_stable_m(mds: &Api<ModelDeployment>) {
    let spec = rolling(json!({"model": {"version": "1"}}), 600);
    mds.create(&PostParams::default(), &model("m", spec))
        .await
        .expect("create m");
    wait_for(
        mds,
        "m",
        "make revision 1 stable",
        Duration::from_secs(120),
        |m| outcome(m, 1) == Some(Outcome::Stable),
    )
    .await;
}

/// Ready on metric checks that passed: revision 1 promoted when its
/// analysis ran to its end.
pub fn promoted_on_passing_checks(md: &ModelDeployment) -> bool {
    let ready = condition(md, "Ready").is_some_and(|(status, ..)| status == "True");
    ready
        && stable(md) == Some(1)
        && history_entry(md, 1).is_some_and(|e| {
            !e.analysis.is_empty()
                && e.analysis
                    .iter()
                    .all(|c| c.verdict == model_operator::api::Verdict::Pass)
        })
}
