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
    let plan = plan(&seen, 1, &passed(), None).unwrap();
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
    let plan = plan(&seen, 2, &passed(), None).unwrap();
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
    let plan = plan(&seen, 2, &passed(), None).unwrap();
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
    let plan = plan(&seen, 1, &passed(), None).unwrap();
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
    let plan = plan(&seen, 1, &passed(), None).unwrap();
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
    let plan = plan(&seen, 1, &analysed, None).unwrap();
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
        plan(&seen, 2, &passed(), None),
        Err(Error::MissingRevision { revision: 1 })
    ));
}

// The canary strategy: what the stable and canary Deployments run.

mod canary {
    use super::*;
    use crate::api::{AnalysisStatus, MetricCheck, Verdict};
    use crate::reconcile::plan::canary_plan::CanaryChild;
    use crate::resources;
    use crate::rollout::canary::{Attempt, Step, status_at};
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    const STEPS: [Step; 3] = [Step::SetWeight(25), Step::Pause(None), Step::SetWeight(50)];

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    /// A Deployment as the Deployment controller left it: every pod of
    /// `revision` updated and available.
    fn settled(mut d: Deployment, replicas: i32) -> Arc<Deployment> {
        d.metadata.generation = Some(1);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(replicas),
            updated_replicas: Some(replicas),
            ready_replicas: Some(replicas),
            available_replicas: Some(replicas),
            ..DeploymentStatus::default()
        });
        Arc::new(d)
    }

    /// Revision 1 Stable on 4 pods; the spec asks for 2.0 (revision 2).
    /// `canary`: the canary Deployment's (revision, available pods).
    fn seen(history: Vec<HistoryEntry>, canary: Option<(i64, i32)>) -> Snapshot {
        let previous = Revisions {
            requested: Some(2),
            current: Some(1),
            stable: Some(1),
            history,
            ..Revisions::default()
        };
        let mut seen = snapshot(
            "2.0",
            Some(1),
            previous,
            vec![revision(1, "1.0"), revision(2, "2.0")],
        );
        let md = seen.md.clone();
        let stable = revision(1, "1.0").served.unwrap();
        seen.deployment = Some(settled(
            resources::deployment(&md, &stable, 1, &Platform::default()),
            4,
        ));
        if let Some((r, available)) = canary {
            let served = if r == 2 {
                revision(2, "2.0").served.unwrap()
            } else {
                stable
            };
            seen.canary_deployment = Some(settled(
                resources::canary_deployment(&md, &served, r, available, &Platform::default()),
                available,
            ));
            let rolling = seen
                .previous
                .history
                .iter()
                .find(|e| e.revision == r)
                .is_none_or(|e| e.outcome == Outcome::Progressing);
            if rolling {
                seen.current = Some(r);
                seen.canary_is_current = true;
            }
        }
        seen.health = Health::Complete;
        seen
    }

    fn checked(verdict: Verdict, at_second: i64) -> Analysed {
        Analysed {
            status: Some(AnalysisStatus {
                revision: 2,
                metrics: vec![MetricCheck {
                    name: "m".into(),
                    verdict,
                    checked_at: Some(at(at_second)),
                    ..MetricCheck::default()
                }],
                ..AnalysisStatus::default()
            }),
            gate: Gate::Passed,
            ..Analysed::unchanged(None)
        }
    }

    fn canary_replicas(plan: &Plan) -> Option<(i64, i32)> {
        match &plan.canary.child {
            CanaryChild::Run {
                revision, replicas, ..
            } => Some((*revision, *replicas)),
            _ => None,
        }
    }

    #[test]
    fn a_new_revision_starts_as_a_canary_next_to_the_stable_deployment() {
        let seen = seen(vec![entry(1, Outcome::Stable)], None);
        let plan = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(plan.decision.target, 2);
        assert_eq!(
            plan.canary.stable.as_ref().map(|(r, _)| *r),
            Some(1),
            "the stable Deployment keeps revision 1"
        );
        assert_eq!(canary_replicas(&plan), Some((2, 1)), "25% of 4 pods");
        let status = plan.revisions.canary.as_ref().unwrap();
        assert_eq!((status.step_index, status.weight), (0, 25));
        assert_eq!(
            plan.canary.route,
            Some((100, 0)),
            "a route gives the canary its share once it has a pod available"
        );
        assert!(
            plan.persist_first,
            "the start is written before the canary runs"
        );
    }

    #[test]
    fn steps_hold_the_promotion_and_a_passing_step_moves_on() {
        let mut history = vec![entry(1, Outcome::Stable), entry(2, Outcome::Progressing)];
        history[1].revision = 2;
        let mut seen = seen(history, Some((2, 1)));
        seen.previous.canary = Some(status_at(&STEPS, 2, 0, at(990), at(990)));
        // Healthy and passing: the decision would promote without steps.
        let stepped = plan(&seen, 2, &checked(Verdict::Pass, 995), Some(&STEPS)).unwrap();
        assert_eq!(stepped.revisions.stable, Some(1), "not promoted mid-plan");
        let status = stepped.revisions.canary.as_ref().unwrap();
        assert_eq!((status.step_index, status.waiting_for_promotion), (1, true));
        assert!(!stepped.persist_first, "a step is written after acting");
        assert_eq!(stepped.canary.route, Some((75, 25)));

        // A failing check at any step rolls back: canary to 0 pods.
        let plan_failed = {
            let mut failing = checked(Verdict::Fail, 995);
            failing.gate = Gate::Failed(Failure {
                reason: "AnalysisFailed",
                message: "m: 0.3 is above 0.05".into(),
            });
            plan(&seen, 2, &failing, Some(&STEPS)).unwrap()
        };
        assert_eq!(plan_failed.decision.target, 1);
        let entry = plan_failed
            .revisions
            .history
            .iter()
            .find(|e| e.revision == 2)
            .unwrap();
        assert!(
            entry
                .message
                .ends_with("(canary at step 1/3: 25% on revision 2)"),
            "the step is in the history: {}",
            entry.message
        );
        assert_eq!(canary_replicas(&plan_failed), Some((2, 0)));
        assert_eq!(plan_failed.canary.route, Some((100, 0)));
        assert!(plan_failed.canary.stable.is_none());
        assert!(plan_failed.revisions.canary.is_none());
        assert!(plan_failed.persist_first);
    }

    #[test]
    fn an_abort_by_hand_names_the_canary_it_aborts() {
        let history = vec![entry(1, Outcome::Stable), entry(2, Outcome::Progressing)];
        let mut seen = seen(history, Some((2, 1)));
        let stored = status_at(&STEPS, 2, 1, at(990), at(900));
        seen.previous.canary = Some(stored.clone());
        seen.abort = Some(Attempt {
            revision: 2,
            started: 100,
        });
        let stale = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(stale.decision.target, 2, "an earlier canary's abort");
        seen.abort = Some(Attempt::of(&stored));
        let aborted = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(aborted.decision.target, 1);
        let entry = aborted
            .revisions
            .history
            .iter()
            .find(|e| e.revision == 2)
            .unwrap();
        assert_eq!(
            (entry.outcome, entry.reason.as_str()),
            (Outcome::RolledBack, "Aborted")
        );
        assert!(entry.message.contains("step 2/3"), "{}", entry.message);
    }

    #[test]
    fn after_the_last_step_the_canary_fills_up_then_its_pods_become_the_stable_ones() {
        let history = vec![entry(1, Outcome::Stable), entry(2, Outcome::Progressing)];
        let mut seen = seen(history, Some((2, 2)));
        let mut four = (*seen.md).clone();
        four.spec.replicas = 4;
        seen.md = Arc::new(four);
        seen.previous.canary = Some(status_at(&STEPS, 2, 3, at(990), at(900)));

        // Every step done, 2 of the 4 pods: not promoted before it runs 4.
        let filling = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(filling.revisions.stable, Some(1));
        assert_eq!(canary_replicas(&filling), Some((2, 4)));
        assert!(!filling.canary.stable_paused);

        // 4 of 4: promoted, and the handover starts. The stable Deployment
        // takes revision 2's template, paused; the route and the stable
        // Service move to revision 2, whose pods are the canary's.
        let md = seen.md.clone();
        let promoted = revision(2, "2.0").served.unwrap();
        seen.canary_deployment = Some(settled(
            resources::canary_deployment(&md, &promoted, 2, 4, &Platform::default()),
            4,
        ));
        seen.template_pods = 4;
        let pausing = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(pausing.revisions.stable, Some(2));
        assert!(
            pausing.canary.stable.is_none(),
            "the stable Deployment runs 2"
        );
        assert!(pausing.canary.stable_paused);
        assert_eq!(pausing.canary.child, CanaryChild::Keep);
        assert_eq!(pausing.canary.route, Some((100, 0)));
        assert_eq!(pausing.canary.stable_selects, Some(2));

        // What the cluster shows next decides each step, after a restart
        // as much as in one run.
        seen.previous = pausing.revisions.clone();
        seen.previous.canary = None;
        let paused = |updated: i32| {
            let mut d = resources::deployment(&md, &promoted, 2, &Platform::default());
            if let Some(spec) = d.spec.as_mut() {
                spec.paused = Some(true);
            }
            let mut d = (*settled(d, 4)).clone();
            if let Some(status) = d.status.as_mut() {
                status.updated_replicas = Some(updated);
            }
            Arc::new(d)
        };
        seen.deployment = Some(paused(0));
        seen.stable_running = Some(2);
        seen.current = Some(2);
        seen.canary_is_current = false;
        let releasing = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(releasing.canary.child, CanaryChild::Release);
        assert!(releasing.canary.stable_paused);
        assert_eq!(releasing.revisions.stable, Some(2), "still promoted");

        seen.canary_deployment = None;
        let adopting = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert!(
            adopting.canary.stable_paused,
            "not before it holds the pods"
        );
        assert_eq!(adopting.canary.child, CanaryChild::None);

        seen.deployment = Some(paused(4));
        let done = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert!(!done.canary.stable_paused, "resumed");
        assert_eq!(done.canary.route, Some((100, 0)));
        assert!(
            done.revisions
                .history
                .iter()
                .any(|e| e.revision == 2 && e.outcome == Outcome::Stable)
        );
    }

    #[test]
    fn a_pass_on_a_stale_status_does_not_restart_a_promoted_canary() {
        // The stable Deployment already runs 2 (promoted), but this pass's
        // ModelDeployment still says Stable 1 and has no canary step.
        let history = vec![entry(1, Outcome::Stable), entry(2, Outcome::Progressing)];
        let mut seen = seen(history, Some((2, 4)));
        let md = seen.md.clone();
        let promoted = revision(2, "2.0").served.unwrap();
        let mut rolling = (*settled(
            resources::deployment(&md, &promoted, 2, &Platform::default()),
            4,
        ))
        .clone();
        if let Some(status) = rolling.status.as_mut() {
            status.updated_replicas = Some(1);
        }
        seen.deployment = Some(Arc::new(rolling));
        seen.stable_running = Some(2);
        seen.current = Some(2);
        seen.canary_is_current = false;
        seen.health = Health::Rolling;
        let plan = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(plan.canary.child, CanaryChild::Keep, "not back to 25%");
        assert_eq!(plan.canary.route, None);
        assert!(
            plan.canary.stable.is_none(),
            "the stable Deployment keeps 2"
        );
    }

    #[test]
    fn a_promoted_canary_is_scaled_to_zero_once_the_stable_deployment_serves_it() {
        let mut history = vec![entry(1, Outcome::Superseded), entry(2, Outcome::Stable)];
        history[0].promoted_at = None;
        let mut seen = seen(history, Some((2, 2)));
        seen.previous.stable = Some(2);
        seen.previous.requested = Some(2);
        let md = seen.md.clone();
        let promoted = revision(2, "2.0").served.unwrap();
        seen.deployment = Some(settled(
            resources::deployment(&md, &promoted, 2, &Platform::default()),
            4,
        ));
        seen.current = Some(2);
        let plan = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(canary_replicas(&plan), Some((2, 0)));
        assert_eq!(plan.canary.route, Some((100, 0)));
        assert!(plan.revisions.canary.is_none());
    }

    #[test]
    fn without_the_canary_strategy_a_leftover_canary_is_scaled_to_zero() {
        let history = vec![entry(1, Outcome::Stable), entry(2, Outcome::RolledBack)];
        let seen = seen(history, Some((2, 1)));
        let plan = plan(&seen, 2, &passed(), None).unwrap();
        assert_eq!(canary_replicas(&plan), Some((2, 0)));
        assert!(plan.canary.stable.is_none());
    }

    #[test]
    fn an_autoscaled_stable_deployment_sets_the_canarys_share() {
        let mut seen = seen(vec![entry(1, Outcome::Stable)], None);
        let mut md = (*seen.md).clone();
        md.spec.autoscaling = serde_json::from_value(json!({"maxReplicas": 10})).unwrap();
        seen.md = Arc::new(md);
        let mut stable = (*seen.deployment.clone().unwrap()).clone();
        if let Some(spec) = stable.spec.as_mut() {
            spec.replicas = Some(8);
        }
        seen.deployment = Some(Arc::new(stable));
        let plan = plan(&seen, 2, &passed(), Some(&STEPS)).unwrap();
        assert_eq!(canary_replicas(&plan), Some((2, 2)), "25% of the HPA's 8");
    }
}

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
