//! Persist: the status write, and when a changed status is worth one.
//!
//! A status change a person or Argo CD acts on (phase, a condition's status
//! or reason, revisions, history, analysis, alerts and their outbox,
//! observedGeneration) is written at once. A change of progress only (pod
//! counts, messages) is written at most once per `PROGRESS_WINDOW` per
//! ModelDeployment: a user still sees counts move within a couple of
//! seconds, and a rollout of N pods costs a few writes instead of one per
//! pod event.
//!
//! A new ModelDeployment's first status counts as progress too, until its
//! first rollout has an outcome, held from its creation (`first_status`
//! says how long): a model that is Ready within the window gets one status
//! write, not three. Nothing is lost by waiting: the decision of a first
//! rollout is derived again from the cluster on the next pass
//! (`rollout::decide` records a running revision the history lacks).

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::context::Context;
use super::observe::Snapshot;
use crate::api::{ModelDeployment, ModelDeploymentStatus, Phase};
use crate::error::Error;
use crate::resources::labels::MANAGER;

/// Whether a status write is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteDue {
    /// Nothing changed.
    Never,
    Now,
    /// Only progress changed and a write went out less than
    /// `PROGRESS_WINDOW` ago: write on the pass after this long.
    After(Duration),
}

/// `hold`: how much longer a change of progress only may wait (what is left
/// of the window since this operator last wrote this ModelDeployment's
/// status, or for one without status, of its first status's hold).
pub fn due(
    stored: Option<&ModelDeploymentStatus>,
    new: &ModelDeploymentStatus,
    hold: Option<Duration>,
) -> WriteDue {
    if stored == Some(new) {
        return WriteDue::Never;
    }
    let progress_only = match stored {
        Some(stored) => without_progress(stored) == without_progress(new),
        // A first status holds back "accepted, rolling out", never an
        // outcome.
        None => matches!(new.phase, None | Some(Phase::Pending | Phase::Progressing)),
    };
    match hold {
        Some(left) if progress_only && !left.is_zero() => WriteDue::After(left),
        _ => WriteDue::Now,
    }
}

/// The status with its progress fields blanked: what is left is what a
/// person or a tool acts on.
fn without_progress(status: &ModelDeploymentStatus) -> ModelDeploymentStatus {
    let mut s = status.clone();
    s.replicas = 0;
    s.ready_replicas = 0;
    s.updated_replicas = 0;
    s.available_replicas = 0;
    s.ready_summary = None;
    for c in &mut s.conditions {
        c.message.clear();
    }
    s
}

/// Server-side apply of the whole status: fields the new status leaves out
/// are removed. The resourceVersion makes it conditional: a write based on an
/// outdated object (a stale cache, or another operator got there first) is
/// refused with a conflict and retried from fresh state, so decisions never
/// overwrite each other. `version` is the resourceVersion the status was
/// derived from; the new one is returned.
pub async fn write(
    seen: &Snapshot,
    status: &ModelDeploymentStatus,
    version: Option<String>,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let api = kube::Api::<ModelDeployment>::namespaced(ctx.client.clone(), &seen.namespace);
    let patch = json!({
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"resourceVersion": &version},
        "status": status,
    });
    let written = api
        .patch_status(
            &seen.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.status_writes.wrote(&seen.md, version);
    Ok(written.resource_version())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::write_times::PROGRESS_WINDOW;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn status(phase: Phase, ready: i32, message: &str) -> ModelDeploymentStatus {
        ModelDeploymentStatus {
            phase: Some(phase),
            ready_replicas: ready,
            ready_summary: Some(format!("{ready}/2")),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: "NotEnoughReplicas".into(),
                message: message.into(),
                observed_generation: Some(1),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            }],
            ..ModelDeploymentStatus::default()
        }
    }

    #[test]
    fn progress_is_written_at_most_once_per_window_and_the_rest_at_once() {
        let stored = status(Phase::Progressing, 0, "0/2 pods available");
        let progressed = status(Phase::Progressing, 1, "1/2 pods available");
        let healthy = status(Phase::Healthy, 2, "2/2 pods available");
        // Half a second into the window: 1.5 s of hold left.
        let just = Some(Duration::from_millis(1500));
        let cases = [
            ("unchanged", Some(&stored), &stored, just, WriteDue::Never),
            (
                "progress right after a write",
                Some(&stored),
                &progressed,
                just,
                WriteDue::After(Duration::from_millis(1500)),
            ),
            (
                "progress, no write within the window",
                Some(&stored),
                &progressed,
                None,
                WriteDue::Now,
            ),
            (
                "phase changed right after a write",
                Some(&stored),
                &healthy,
                just,
                WriteDue::Now,
            ),
            (
                "first status, created half a second ago",
                None,
                &stored,
                just,
                WriteDue::After(Duration::from_millis(1500)),
            ),
            (
                "first status of an object created long ago",
                None,
                &stored,
                None,
                WriteDue::Now,
            ),
            (
                "first status that is already an outcome",
                None,
                &healthy,
                just,
                WriteDue::Now,
            ),
            (
                "first status held for a burst",
                None,
                &stored,
                Some(Duration::from_secs(57)),
                WriteDue::After(Duration::from_secs(57)),
            ),
        ];
        for (what, stored, new, since, want) in cases {
            assert_eq!(due(stored, new, since), want, "{what}");
        }
    }

    #[test]
    fn a_condition_reason_change_is_never_held_back() {
        let stored = status(Phase::Progressing, 1, "1/2 pods available");
        let mut new = stored.clone();
        new.conditions[0].reason = "Serving".into();
        assert_eq!(
            due(Some(&stored), &new, Some(PROGRESS_WINDOW)),
            WriteDue::Now
        );
    }
}
