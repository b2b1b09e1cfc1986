//! Events a person reads in `kubectl describe`: sent on changes and
//! transitions only, so a resync repeats none of them.

use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::apply::Outcome;
use super::conditions::{self, DEGRADED};
use super::context::Context;
use super::drift::Need;
use super::status::Revisions;
use crate::api::{ModelDeployment, ModelDeploymentStatus, Phase};
use crate::rollout::decide::Change;

/// Events for rollouts starting; failures are announced by the Degraded
/// condition's transition, with the full story.
pub(super) async fn announce_changes(
    md: &ModelDeployment,
    changes: &[Change],
    planned: &Revisions,
    ctx: &Context,
) {
    for change in changes {
        if let Change::Start { revision } = change {
            let entry = planned.history.iter().find(|e| e.revision == *revision);
            let note = entry.map_or_else(
                || format!("rolling out revision {revision}"),
                |e| {
                    format!(
                        "rolling out revision {revision} (model {}, image {})",
                        e.model_version, e.image
                    )
                },
            );
            publish(
                md,
                ctx,
                EventType::Normal,
                "RolloutStarted",
                "Rollout",
                note,
            )
            .await;
        }
    }
}

pub(super) async fn report_apply<K>(
    md: &ModelDeployment,
    kind: &str,
    outcome: &Outcome<K>,
    ctx: &Context,
) {
    let (reason, note) = match outcome.need {
        Need::Nothing => return,
        Need::Create => ("Created", format!("created {kind} {}", md.name_any())),
        Need::Update => (
            "Updated",
            format!("updated {kind} {} to match the spec", md.name_any()),
        ),
        Need::RestoreDrift => (
            "DriftCorrected",
            format!(
                "restored {kind} {}: fields the operator manages had been changed by hand",
                md.name_any()
            ),
        ),
    };
    publish(md, ctx, EventType::Normal, reason, "Apply", note).await;
}

/// Events for status changes a person should see in `kubectl describe`.
/// Sent on transitions only, so a resync never repeats them.
pub(super) async fn announce_transitions(
    md: &ModelDeployment,
    old: Option<&ModelDeploymentStatus>,
    new: &ModelDeploymentStatus,
    ctx: &Context,
) {
    let degraded = |s: Option<&ModelDeploymentStatus>| {
        s.and_then(|s| conditions::find(&s.conditions, DEGRADED))
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let now_degraded = degraded(Some(new));
    if let Some((reason, message)) = now_degraded.clone()
        && degraded(old) != now_degraded
    {
        publish(md, ctx, EventType::Warning, &reason, "Reconcile", message).await;
    }
    let became_healthy =
        new.phase == Some(Phase::Healthy) && old.and_then(|s| s.phase) != Some(Phase::Healthy);
    if became_healthy {
        let note = format!(
            "model {} {} serves on {} pods",
            new.model.as_deref().unwrap_or_default(),
            md.spec.model.version,
            new.available_replicas
        );
        publish(
            md,
            ctx,
            EventType::Normal,
            "RolloutComplete",
            "Rollout",
            note,
        )
        .await;
    }
}

/// Events are best effort: a failure to record one never fails a reconcile.
pub(super) async fn publish(
    md: &ModelDeployment,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &md.object_ref(&())).await {
        tracing::warn!(name = %md.name_any(), error = %e, "could not record event");
    }
}
