//! The plan, table by table: what a pass decides to persist, run, announce
//! and count, from a snapshot of the cluster.

use crate::resources::Platform;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::api::{HistoryEntry, ModelDeployment, Outcome};
use crate::gates::{Failure, Gate, Health};
use crate::rollout::revision::{Revision, served_hash};

pub(super) fn md(version: &str) -> ModelDeployment {
    serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml", "uid": "u", "generation": 2},
        "spec": {"model": {"version": version}, "server": {"image": "srv:1"}, "replicas": 2},
    }))
    .unwrap()
}

pub(super) fn revision(number: i64, version: &str) -> Revision {
    let served = ServedVersion::requested(&md(version));
    Revision {
        number,
        hash: served_hash(&served),
        uid: None,
        served: Some(served),
    }
}

pub(super) fn entry(revision: i64, outcome: Outcome) -> HistoryEntry {
    HistoryEntry {
        revision,
        outcome,
        promoted_at: (outcome == Outcome::Stable)
            .then(|| Time(Timestamp::from_second(10).unwrap())),
        ..HistoryEntry::default()
    }
}

/// `version` is what the spec asks for; `current` what the Deployment runs.
pub(super) fn snapshot(
    version: &str,
    current: Option<i64>,
    previous: Revisions,
    known: Vec<Revision>,
) -> Snapshot {
    let md = md(version);
    Snapshot {
        served: ServedVersion::requested(&md),
        md: Arc::new(md),
        namespace: "ml".into(),
        name: "fraud".into(),
        previous,
        deployment: None,
        canary_deployment: None,
        current,
        stable_running: current,
        template_pods: 0,
        model_pods: 0,
        live_pods: Default::default(),
        warm_deployment: None,
        canary_is_current: false,
        health: Health::Rolling,
        unschedulable: None,
        known,
        retry_token: None,
        promotion: None,
        abort: None,
        confirmed: Vec::new(),
        now: Time(Timestamp::from_second(1_000).unwrap()),
    }
}

pub(super) fn passed() -> Analysed {
    Analysed {
        gate: Gate::Passed,
        ..Analysed::unchanged(None)
    }
}

pub(super) fn stable_on_1() -> Revisions {
    Revisions {
        requested: Some(1),
        current: Some(1),
        stable: Some(1),
        history: vec![entry(1, Outcome::Stable)],
        ..Revisions::default()
    }
}

#[test]
fn a_first_rollout_is_acted_on_before_it_is_written_and_announced_by_its_children() {
    let seen = snapshot("1.0", None, Revisions::default(), vec![revision(1, "1.0")]);
    let plan = plan(&seen, 1, &passed(), None, None).unwrap();
    assert_eq!(plan.decision.target, 1);
    assert!(!plan.persist_first, "nothing a crash could undo");
    assert!(plan.announcements.is_empty(), "the Created event says it");
    assert_eq!(plan.revisions.requested, Some(1));
    assert_eq!(plan.revisions.history.len(), 1);
    assert_eq!(plan.revisions.history[0].outcome, Outcome::Progressing);
    assert_eq!(plan.requeue, RESYNC);
}

#[test]
fn a_new_version_over_a_stable_one_is_written_first_and_announced() {
    let seen = snapshot(
        "2.0",
        Some(1),
        stable_on_1(),
        vec![revision(1, "1.0"), revision(2, "2.0")],
    );
    let plan = plan(&seen, 2, &passed(), None, None).unwrap();
    assert_eq!(plan.decision.target, 2);
    assert_eq!(plan.target.model.version, "2.0");
    assert!(plan.persist_first);
    assert_eq!(plan.announcements.len(), 1);
    assert_eq!(plan.announcements[0].reason, "RolloutStarted");
    assert!(
        plan.announcements[0].note.contains("revision 2"),
        "{:?}",
        plan.announcements
    );
}

/// Revision 2 rolling out over stable revision 1, its pod crash-looping.
pub(super) fn crash_looping() -> Snapshot {
    let mut previous = stable_on_1();
    previous.requested = Some(2);
    previous.current = Some(2);
    previous.history.push(entry(2, Outcome::Progressing));
    let mut seen = snapshot(
        "2.0",
        Some(2),
        previous,
        vec![revision(1, "1.0"), revision(2, "2.0")],
    );
    seen.health = Health::Failed(Failure {
        reason: "CrashLoopBackOff",
        message: "1/1 new pods in CrashLoopBackOff".into(),
    });
    seen
}

#[test]
fn a_crash_loop_rolls_back_to_the_stable_template_written_first_and_counted() {
    let seen = crash_looping();
    let plan = plan(&seen, 2, &passed(), None, None).unwrap();
    assert_eq!(plan.decision.target, 1);
    assert_eq!(
        plan.target.model.version, "1.0",
        "the stable snapshot's template"
    );
    assert!(
        plan.persist_first,
        "a rollback is remembered before it is carried out"
    );
    let outcomes: Vec<_> = plan
        .outcomes
        .iter()
        .map(|l| (l.outcome.as_str(), l.reason.as_str()))
        .collect();
    assert_eq!(outcomes, [("RolledBack", "CrashLoopBackOff")]);
    let failed = plan
        .revisions
        .history
        .iter()
        .find(|e| e.revision == 2)
        .unwrap();
    assert_eq!(failed.outcome, Outcome::RolledBack);
}

#[test]
fn a_converged_pass_plans_nothing() {
    let mut seen = snapshot("1.0", Some(1), stable_on_1(), vec![revision(1, "1.0")]);
    seen.health = Health::Complete;
    let plan = plan(&seen, 1, &passed(), None, None).unwrap();
    assert_eq!(plan.revisions, seen.previous);
    assert!(!plan.persist_first);
    assert!(plan.announcements.is_empty());
    assert!(plan.outcomes.is_empty());
}

#[test]
fn completing_the_first_rollout_is_counted_not_written_first() {
    let previous = Revisions {
        requested: Some(1),
        current: Some(1),
        history: vec![entry(1, Outcome::Progressing)],
        ..Revisions::default()
    };
    let mut seen = snapshot("1.0", Some(1), previous, vec![revision(1, "1.0")]);
    seen.health = Health::Complete;
    let plan = plan(&seen, 1, &passed(), None, None).unwrap();
    assert_eq!(plan.revisions.stable, Some(1));
    assert!(!plan.persist_first, "no template changes");
    assert_eq!(plan.outcomes.len(), 1);
    assert_eq!(plan.outcomes[0].outcome, "Stable");
}

#[test]
fn an_analysis_round_sets_the_requeue() {
    let seen = snapshot("1.0", None, Revisions::default(), vec![revision(1, "1.0")]);
    let analysed = Analysed {
        next_round: Some(std::time::Duration::from_secs(7)),
        ..passed()
    };
    let plan = plan(&seen, 1, &analysed, None, None).unwrap();
    assert_eq!(plan.requeue, std::time::Duration::from_secs(7));
}

#[test]
fn rolling_back_to_a_revision_without_its_snapshot_is_an_error_not_a_guess() {
    let mut previous = stable_on_1();
    previous.requested = Some(2);
    previous.current = Some(2);
    previous.history.push(entry(2, Outcome::Progressing));
    // Revision 1's snapshot is gone.
    let mut seen = snapshot("2.0", Some(2), previous, vec![revision(2, "2.0")]);
    seen.health = Health::Failed(Failure {
        reason: "CrashLoopBackOff",
        message: "x".into(),
    });
    assert!(matches!(
        plan(&seen, 2, &passed(), None, None),
        Err(Error::MissingRevision { revision: 1 })
    ));
}

// The canary strategy: what the stable and canary Deployments run.

mod canary;

/// The snapshots read before deciding include every revision a decision
/// can go back to: after a promotion, the Stable revision before it (a
/// post-promotion breach reinstates it), but not the rest of the history.
#[test]
fn the_snapshots_needed_include_what_a_breach_reinstates_and_no_more() {
    let mut superseded = entry(2, Outcome::Superseded);
    superseded.promoted_at = Some(Time(Timestamp::from_second(20).unwrap()));
    let promoted = Revisions {
        requested: Some(3),
        current: Some(3),
        stable: Some(3),
        history: vec![
            entry(1, Outcome::Superseded),
            superseded,
            HistoryEntry {
                promoted_at: Some(Time(Timestamp::from_second(30).unwrap())),
                ..entry(3, Outcome::Stable)
            },
        ],
        ..Revisions::default()
    };
    let seen = snapshot("3.0", Some(3), promoted, vec![]);
    assert_eq!(seen.needed_revisions(), [2, 3]);
}
