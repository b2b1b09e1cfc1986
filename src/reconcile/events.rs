//! Events a person reads in `kubectl describe`: what they may act on (a
//! rollout started or completed, a rollback, drift corrected, a child
//! created or deleted), sent once per change, never on a resync. Which
//! events a pass sends is decided purely (`Announcement`); `publish` sends
//! them, best effort.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::ResourceExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::api::{ModelDeployment, ModelDeploymentStatus, Phase};
use crate::reasons;
use crate::reconcile::act::drift::Need;
use crate::rollout::decide::Change;
use crate::status::Revisions;
use crate::status::conditions::{self, DEGRADED};

/// One Event to send about the ModelDeployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    pub warning: bool,
    pub reason: String,
    pub action: &'static str,
    pub note: String,
    /// The child the event is about, when there is one.
    pub related: Option<ObjectReference>,
}

impl Announcement {
    pub fn warning(reason: &str, action: &'static str, note: String) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, action, note)
        }
    }

    fn normal(reason: &str, action: &'static str, note: String) -> Self {
        Self {
            warning: false,
            reason: reason.to_string(),
            action,
            note,
            related: None,
        }
    }
}

/// A rollout starting. The first revision of a new ModelDeployment is
/// announced by the `Created` event of its children instead.
pub fn for_changes(changes: &[Change], planned: &Revisions, first: bool) -> Vec<Announcement> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::Start { revision } if !first => Some(*revision),
            _ => None,
        })
        .map(|revision| {
            let entry = planned.history.iter().find(|e| e.revision == revision);
            let note = entry.map_or_else(
                || format!("rolling out revision {revision}"),
                |e| {
                    format!(
                        "rolling out revision {revision} (model {}, image {})",
                        e.model_version, e.image
                    )
                },
            );
            Announcement::normal(reasons::ROLLOUT_STARTED, "Rollout", note)
        })
        .collect()
}

/// What applying the children did, for a person: one event for the
/// children created in this pass, one per child whose hand edits were
/// undone. Updates that follow a spec edit are the user's own doing and
/// are not announced.
pub fn for_children(
    md: &ModelDeployment,
    applied: &[(&'static str, Need, ObjectReference)],
    revision: i64,
    model_version: &str,
) -> Vec<Announcement> {
    let name = md.name_any();
    let created: Vec<&str> = applied
        .iter()
        .filter(|(_, need, _)| *need == Need::Create)
        .map(|(kind, _, _)| *kind)
        .collect();
    let mut out = Vec::new();
    if !created.is_empty() {
        out.push(Announcement::normal(
            reasons::CREATED,
            "Apply",
            format!(
                "created {} {name} for revision {revision} (model version {model_version})",
                created.join(" and ")
            ),
        ));
    }
    for (kind, _, child) in applied.iter().filter(|(_, n, _)| *n == Need::RestoreDrift) {
        out.push(Announcement {
            related: Some(child.clone()),
            ..Announcement::normal(
                reasons::DRIFT_CORRECTED,
                "Apply",
                format!(
                    "restored {kind} {name}: fields the operator manages had been changed by hand"
                ),
            )
        })
    }
    out
}

pub fn hpa_deleted() -> Announcement {
    Announcement::normal(
        reasons::DELETED,
        "Delete",
        "deleted the HorizontalPodAutoscaler: autoscaling was turned off or handed to an external scaler".into(),
    )
}

pub fn pdb_deleted() -> Announcement {
    Announcement::normal(
        reasons::DELETED,
        "Delete",
        "deleted the PodDisruptionBudget: disruptionBudget was removed".into(),
    )
}

/// Status changes a person should see: Degraded turning True (with the
/// whole story) and the model becoming Healthy.
pub fn for_transitions(
    md: &ModelDeployment,
    old: Option<&ModelDeploymentStatus>,
    new: &ModelDeploymentStatus,
) -> Vec<Announcement> {
    let degraded = |s: Option<&ModelDeploymentStatus>| {
        s.and_then(|s| conditions::find(&s.conditions, DEGRADED))
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let mut out = Vec::new();
    let now_degraded = degraded(Some(new));
    if let Some((reason, message)) = now_degraded.clone()
        && degraded(old) != now_degraded
    {
        out.push(Announcement {
            warning: true,
            reason,
            action: "Reconcile",
            note: message,
            related: None,
        });
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
        out.push(Announcement::normal(
            reasons::ROLLOUT_COMPLETE,
            "Rollout",
            note,
        ));
    }
    out
}

/// Events are best effort: a failure to record one never fails a reconcile.
/// Under the 1 KiB the API server allows an Event's note.
const NOTE_LIMIT: usize = 1000;

/// The one place the operator publishes Events: those a pass queued
/// (`report`) and the warning about an object it cannot decode
/// (`controller::decode`).
pub async fn publish(
    client: &Client,
    reporter: &Reporter,
    regarding: &ObjectReference,
    announcements: Vec<Announcement>,
) {
    for a in announcements {
        let event = Event {
            type_: if a.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: a.reason,
            // The API server refuses notes of 1 KiB or more.
            note: Some(crate::status::bounded::truncate(&a.note, NOTE_LIMIT)),
            action: a.action.to_string(),
            secondary: a.related,
        };
        let recorder = Recorder::new(client.clone(), reporter.clone());
        if let Err(e) = recorder.publish(&event, regarding).await {
            let name = regarding.name.as_deref().unwrap_or_default();
            tracing::warn!(name, error = %e, "could not record event");
        }
    }
}
