//! Plan: everything one reconcile will change, decided purely from the
//! snapshot, the spec's revision and the analysis. The shell in
//! `reconcile` then persists, acts and reports exactly what the plan says.

pub mod canary_plan;
mod handover;
pub mod sides;
pub mod warm;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;

use super::events::{self, Announcement};
use super::observe::Snapshot;
use crate::alerts;
use crate::analysis::schedule::Analysed;
use crate::api::{
    AlertChannel, CanaryStatus, HistoryEntry, ModelDeploymentStatus, Outcome, ServedVersion,
    UnschedulableStatus,
};
use crate::error::Error;
use crate::gates::Health;
use crate::metrics::RevisionLabels;
use crate::reasons;
use crate::resources::route::Weights;
use crate::rollout::canary::Step;
use crate::rollout::decide::{Change, Decision, Inputs, decide};
use crate::rollout::history::{self, Described};
use crate::status::{Blocker, Observed, Revisions, derive};
use canary_plan::CanaryPlan;

/// A converged ModelDeployment is looked at again this often, from the
/// cache only.
pub const RESYNC: Duration = Duration::from_secs(300);

pub struct Plan {
    pub decision: Decision,
    /// What the Deployment's pod template runs: the decided revision's
    /// served version.
    pub target: ServedVersion,
    /// The revision bookkeeping status will hold.
    pub revisions: Revisions,
    /// Channels of alert notifications dropped from a full outbox, never
    /// sent (one per notification and channel).
    pub notifications_dropped: Vec<AlertChannel>,
    /// Write status before touching the Deployment: a crash in between
    /// could otherwise change the outcome (a rollback forgotten, a failed
    /// version tried again).
    pub persist_first: bool,
    /// Events for the decision, sent once its status write succeeded.
    pub announcements: Vec<Announcement>,
    /// Rollouts that ended, for `/metrics`.
    pub outcomes: Vec<RevisionLabels>,
    /// When to look again if nothing else happens.
    pub requeue: Duration,
    /// What the stable and canary Deployments run (Canary strategy).
    pub canary: CanaryPlan,
}

/// Decides the rollout and everything that follows from it.
/// `steps`: the canary's, when the strategy is Canary; `route`: the
/// (stable, canary) weights of its HTTPRoute as read this pass, when known.
pub fn plan(
    seen: &Snapshot,
    requested: i64,
    analysed: &Analysed,
    steps: Option<&[Step]>,
    route: Option<Weights>,
) -> Result<Plan, Error> {
    let previous = &seen.previous;
    let (decision, stepped) = decide_rollout(seen, requested, analysed, steps);
    let target =
        seen.served_of(decision.target, requested)
            .cloned()
            .ok_or(Error::MissingRevision {
                revision: decision.target,
            })?;
    let canary = canary_plan::children(seen, steps, stepped, &decision, requested, route);
    let history = planned_history(seen, &decision, analysed, requested);
    let unschedulable = still_unschedulable(seen, &history);
    let mut revisions = Revisions {
        requested: Some(requested),
        current: Some(decision.target),
        stable: decision.stable,
        unschedulable,
        history,
        analysis: analysed.status.clone(),
        alerts: Vec::new(),
        alert_outbox: Vec::new(),
        canary: canary.status.clone(),
    };
    let notifications_dropped = raise_alerts(seen, &decision.changes, &mut revisions);

    let first = previous.requested.is_none() && previous.history.is_empty();
    Ok(Plan {
        persist_first: revisions != *previous
            && crash_could_change_outcome(&decision, seen.current, previous.stable),
        announcements: events::for_changes(&decision.changes, &revisions, first),
        outcomes: outcomes(&decision.changes),
        requeue: [
            analysed.next_round,
            canary.requeue,
            capacity_check(seen, revisions.unschedulable.as_ref()),
        ]
        .into_iter()
        .flatten()
        .fold(RESYNC, Duration::min),
        decision,
        target,
        revisions,
        notifications_dropped,
        canary,
    })
}

/// Unschedulable pods stay in status while their revision still rolls out.
fn still_unschedulable(seen: &Snapshot, history: &[HistoryEntry]) -> Option<UnschedulableStatus> {
    seen.unschedulable.clone().filter(|u| {
        history
            .iter()
            .any(|e| e.revision == u.revision && e.outcome == Outcome::Progressing)
    })
}

/// While pods wait for a node, look again when the grace ends, and every
/// few seconds before: a pod that gets a node wakes nothing (only failing
/// and unschedulable pods do), and status must stop saying it waits.
fn capacity_check(
    seen: &Snapshot,
    unschedulable: Option<&UnschedulableStatus>,
) -> Option<Duration> {
    const LOOK_AGAIN: Duration = Duration::from_secs(5);
    let unschedulable = unschedulable?;
    let grace = seen.md.spec.rollout.capacity_grace_seconds;
    let until_grace_ends = unschedulable.since.as_ref().and_then(|since| {
        let ends = since
            .0
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(grace.into()))
            .ok()?;
        let left = seen.now.0.duration_until(ends);
        Some(
            Duration::try_from(left)
                .unwrap_or_default()
                .max(Duration::from_secs(1)),
        )
    });
    Some(until_grace_ends.map_or(LOOK_AGAIN, |d| d.min(LOOK_AGAIN)))
}

/// The rollout decision, and the canary's step when one runs: a running
/// canary moves on a step, and its gate holds promotion until the last
/// step (or fails it at any).
fn decide_rollout(
    seen: &Snapshot,
    requested: i64,
    analysed: &Analysed,
    steps: Option<&[Step]>,
) -> (Decision, Option<CanaryStatus>) {
    let previous = &seen.previous;
    let (stepped, gate) = match steps {
        Some(steps) => canary_plan::step(seen, steps, analysed),
        None => (None, analysed.gate.clone()),
    };
    let decision = decide(&Inputs {
        requested,
        previous_update: previous.requested,
        current: seen.current,
        stable: previous.stable,
        history: &previous.history,
        paused: seen.md.spec.paused,
        auto_rollback: seen.md.spec.rollout.auto_rollback,
        retry_token: seen.retry_token.as_deref(),
        health: match &seen.health {
            Health::Failed(f) => Health::Failed(canary_plan::at_step(f.clone(), stepped.as_ref())),
            other => other.clone(),
        },
        analysis: gate,
        breach: analysed.breach.clone(),
    });
    (decision, stepped)
}

/// The version history after the decision's changes and this pass's
/// checks, pruned to the spec's limit without ever dropping a revision
/// still in use (requested, served, stable).
fn planned_history(
    seen: &Snapshot,
    decision: &Decision,
    analysed: &Analysed,
    requested: i64,
) -> Vec<HistoryEntry> {
    let describe = |r: i64| {
        seen.served_of(r, requested).map_or(
            Described {
                model_version: String::new(),
                image: String::new(),
            },
            |s| Described {
                model_version: s.model.version.clone(),
                image: s.server.image.clone(),
            },
        )
    };
    let mut history = history::apply(
        &seen.previous.history,
        &decision.changes,
        describe,
        seen.retry_token.as_deref(),
        &seen.now,
    );
    history::record_checks(&mut history, &decision.changes, analysed.status.as_ref());
    let pinned: Vec<i64> = [Some(requested), Some(decision.target), decision.stable]
        .into_iter()
        .flatten()
        .collect();
    let limit = usize::try_from(seen.md.spec.revision_history_limit)
        .unwrap_or(1)
        .max(1);
    history::prune(history, limit, &pinned)
}

/// A rollback or a reinstatement is remembered before the Deployment goes
/// back, and so is a new template when a Stable revision exists: a process
/// killed in between then finds the decision in status and carries it out,
/// instead of deciding afresh from a half-changed cluster (and, say, trying
/// a version it just failed again). A first rollout or a pass that changes
/// no template has nothing a crash could undo.
fn crash_could_change_outcome(
    decision: &Decision,
    current: Option<i64>,
    stable: Option<i64>,
) -> bool {
    let goes_back = decision.changes.iter().any(|c| {
        matches!(
            c,
            Change::Fail {
                replaced_by: Some(_),
                ..
            } | Change::Reinstate { .. }
        )
    });
    let new_template = current.is_some_and(|c| c != decision.target);
    goes_back || (new_template && stable.is_some())
}

impl Plan {
    /// The status that records the decision before the children change
    /// (`persist_first`): the Deployment is about to get another template,
    /// so its progress is not yet known.
    pub fn decided_status(&self, seen: &Snapshot) -> ModelDeploymentStatus {
        derive_status(
            seen,
            &self.revisions,
            seen.deployment.as_deref(),
            None,
            true,
        )
    }

    /// The status the pass ends with, with the Deployment as acting left
    /// it and the child the API server refused, if any.
    pub fn status_after(
        &self,
        seen: &Snapshot,
        deployment: Option<&Deployment>,
        invalid: Option<&Blocker>,
    ) -> ModelDeploymentStatus {
        derive_status(seen, &self.revisions, deployment, invalid, false)
    }
}

/// The status of a spec that cannot be applied: the revision bookkeeping
/// stays as it was, nothing else changes.
pub fn blocked_status(seen: &Snapshot, cause: &Blocker) -> ModelDeploymentStatus {
    derive_status(
        seen,
        &seen.previous,
        seen.deployment.as_deref(),
        Some(cause),
        false,
    )
}

/// The one way a pass derives status: from the snapshot and the revision
/// bookkeeping it ends with.
fn derive_status(
    seen: &Snapshot,
    revisions: &Revisions,
    deployment: Option<&Deployment>,
    invalid: Option<&Blocker>,
    template_pending: bool,
) -> ModelDeploymentStatus {
    derive(
        &Observed {
            md: &seen.md,
            served: &seen.served,
            deployment,
            invalid,
            revisions,
            template_pending,
        },
        &seen.now,
    )
}

/// The alerts the planned state raises, against those already raised,
/// and the lifecycle notices of `changes`, as notifications: they go into
/// status with the decision that raised them, and leave it once every
/// channel confirmed them. Returns the channels of notifications a full
/// outbox dropped.
fn raise_alerts(seen: &Snapshot, changes: &[Change], planned: &mut Revisions) -> Vec<AlertChannel> {
    let previous = &seen.previous;
    let failure_limit = seen
        .md
        .spec
        .rollout
        .analysis
        .as_ref()
        .map_or(0, |a| a.failure_limit);
    let raised = alerts::desired(&alerts::desired::Facts {
        requested: planned.requested,
        current: planned.current,
        history: &planned.history,
        analysis: planned.analysis.as_ref(),
        failure_limit,
    });
    let alerts = alerts::transition(&previous.alerts, raised, &seen.now);
    planned.alerts = alerts.next.clone();
    let object = format!("{}/{}", seen.namespace, seen.name);
    let notices = alerts::lifecycle::notices(&alerts::lifecycle::Facts {
        changes,
        history: &planned.history,
        canary_before: previous.canary.as_ref(),
        canary: planned.canary.as_ref(),
        object: &object,
        now: &seen.now,
    });
    let outbox = alerts::outbox::next(
        &previous.alert_outbox,
        &alerts,
        &notices,
        &alerts::outbox::Routing::of(seen.md.spec.alerts.as_ref()),
        &seen.confirmed,
        seen.md.metadata.uid.as_deref().unwrap_or_default(),
        &seen.now,
    );
    planned.alert_outbox = outbox.outbox;
    outbox.dropped
}

fn outcomes(changes: &[Change]) -> Vec<RevisionLabels> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::Succeed { .. } => Some((Outcome::Stable, reasons::ROLLOUT_COMPLETE)),
            Change::Fail {
                replaced_by: Some(_),
                failure,
                ..
            } => Some((Outcome::RolledBack, failure.reason)),
            Change::Fail {
                replaced_by: None,
                failure,
                ..
            } => Some((Outcome::Failed, failure.reason)),
            Change::Start { .. } | Change::Supersede { .. } | Change::Reinstate { .. } => None,
        })
        .map(|(outcome, reason)| RevisionLabels {
            outcome: outcome.to_string(),
            reason: reason.into(),
        })
        .collect()
}

#[cfg(test)]
mod notify_tests;
#[cfg(test)]
mod tests;
