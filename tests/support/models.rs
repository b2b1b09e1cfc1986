//! ModelDeployments the tests share, and what their status says.

use std::time::Duration;

use kube::Api;
use kube::api::PostParams;

use model_operator::api::{HistoryEntry, ModelDeployment, Outcome, Phase};

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

/// Creates ModelDeployment `m` (version 1 on `srv:1`, 2 replicas, a 600 s
/// progress deadline) and waits until revision 1 is stable.
pub async fn create_stable_m(mds: &Api<ModelDeployment>) {
    let md: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
        "spec": {"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 2,
                 "rollout": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 600}},
    }))
    .expect("manifest");
    mds.create(&PostParams::default(), &md)
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
