//! The canary strategy: what the stable and canary Deployments run, step
//! by step, through promotion and abort.

use super::*;
use crate::api::{AnalysisStatus, MetricCheck, Verdict};
use crate::reconcile::plan::canary_plan::{CanaryChild, Dependents};
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
    let plan = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
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
    let stepped = plan(&seen, 2, &checked(Verdict::Pass, 995), Some(&STEPS), None).unwrap();
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
        plan(&seen, 2, &failing, Some(&STEPS), None).unwrap()
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
    let stale = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
    assert_eq!(stale.decision.target, 2, "an earlier canary's abort");
    seen.abort = Some(Attempt::of(&stored));
    let aborted = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
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
    let stable = revision(1, "1.0").served.unwrap();
    seen.deployment = Some(settled(
        resources::deployment(&seen.md, &stable, 1, &Platform::default()),
        4,
    ));
    seen.previous.canary = Some(status_at(&STEPS, 2, 3, at(990), at(900)));

    // Every step done, 2 of the 4 pods: not promoted before it runs 4.
    let filling = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
    assert_eq!(filling.revisions.stable, Some(1));
    assert_eq!(canary_replicas(&filling), Some((2, 4)));
    assert!(!filling.canary.stable_paused);

    // 4 of 4: promoted, and the handover starts. The stable Deployment
    // takes revision 2's template, paused; the stable Service moves to
    // revision 2, whose pods are the canary's. The route keeps its
    // weights until a later pass: both Services select those pods by
    // then.
    let md = seen.md.clone();
    let promoted = revision(2, "2.0").served.unwrap();
    seen.canary_deployment = Some(settled(
        resources::canary_deployment(&md, &promoted, 2, 4, &Platform::default()),
        4,
    ));
    seen.template_pods = 4;
    let pausing = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
    assert_eq!(pausing.revisions.stable, Some(2));
    assert!(
        pausing.canary.stable.is_none(),
        "the stable Deployment runs 2"
    );
    assert!(pausing.canary.stable_paused);
    assert_eq!(pausing.canary.child, CanaryChild::Keep);
    assert_eq!(pausing.canary.route, None);
    assert_eq!(pausing.canary.stable_selects, Some(2));
    assert_eq!(pausing.canary.canary_selects, Some(2));

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
    let releasing = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
    assert_eq!(releasing.canary.child, CanaryChild::Release);
    assert_eq!(releasing.canary.route, Some((100, 0)));
    assert!(releasing.canary.stable_paused);
    assert_eq!(releasing.revisions.stable, Some(2), "still promoted");

    seen.canary_deployment = None;
    let adopting = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
    assert!(
        adopting.canary.stable_paused,
        "not before it holds the pods"
    );
    assert_eq!(adopting.canary.child, CanaryChild::None);

    seen.deployment = Some(paused(4));
    let done = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
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
    let plan = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
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
    let plan = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
    assert_eq!(canary_replicas(&plan), Some((2, 0)));
    assert_eq!(plan.canary.route, Some((100, 0)));
    assert!(plan.revisions.canary.is_none());
}

#[test]
fn without_the_canary_strategy_a_leftover_canary_is_scaled_to_zero() {
    let history = vec![entry(1, Outcome::Stable), entry(2, Outcome::RolledBack)];
    let seen = seen(history, Some((2, 1)));
    let plan = plan(&seen, 2, &passed(), None, None).unwrap();
    assert_eq!(canary_replicas(&plan), Some((2, 0)));
    assert!(plan.canary.stable.is_none());
}

/// `seen` for a model of 4 pods with `dynamicStableScale`, the stable
/// Deployment (revision 1) scaled to `stable` pods, all available.
fn dynamic(mut seen: Snapshot, stable: i32) -> Snapshot {
    let mut md = (*seen.md).clone();
    md.spec.replicas = 4;
    md.spec.rollout.canary = serde_json::from_value(json!({
        "steps": [{"setWeight": 50}],
        "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
        "dynamicStableScale": true,
    }))
    .unwrap();
    seen.md = Arc::new(md);
    let served = revision(1, "1.0").served.unwrap();
    let mut d = resources::deployment(&seen.md, &served, 1, &Platform::default());
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = Some(stable);
    }
    seen.deployment = Some(settled(d, stable));
    seen
}

#[test]
fn with_dynamic_stable_scale_the_stable_side_gives_up_pods_the_route_no_longer_uses() {
    // 25% of 4: one canary pod available, the route not moved yet. The
    // route moves to 25 (one pod of four); the stable side keeps its 4
    // until the route, read back, says so.
    let mut seen = dynamic(seen(vec![entry(1, Outcome::Stable)], Some((2, 1))), 4);
    seen.model_pods = 5;
    let moving = plan(&seen, 2, &passed(), Some(&STEPS), Some((100, 0))).unwrap();
    assert_eq!(moving.canary.route, Some((75, 25)));
    assert_eq!(moving.canary.stable_replicas, Some(4));
    assert_eq!(canary_replicas(&moving), Some((2, 1)));

    let moved = plan(&seen, 2, &passed(), Some(&STEPS), Some((75, 25))).unwrap();
    assert_eq!(
        moved.canary.stable_replicas,
        Some(3),
        "the route is written"
    );
}

#[test]
fn with_dynamic_stable_scale_an_abort_brings_stable_pods_back_before_the_route() {
    // Rolled back at 50%: 2 stable and 2 canary pods, the route 50/50.
    let history = vec![entry(1, Outcome::Stable), entry(2, Outcome::RolledBack)];
    let mut seen = dynamic(seen(history, Some((2, 2))), 2);
    seen.model_pods = 4;
    let back = plan(&seen, 2, &passed(), Some(&STEPS), Some((50, 50))).unwrap();
    assert_eq!(back.decision.target, 1);
    assert_eq!(back.canary.stable_replicas, Some(3), "one stable pod back");
    assert_eq!(
        back.canary.route,
        Some((50, 50)),
        "not before it is available"
    );
    assert_eq!(canary_replicas(&back), Some((2, 2)));
    assert_eq!(back.canary.canary_selects, Some(2));
    assert!(
        back.canary.requeue.is_some(),
        "looked at again: the route and a pod that goes wake nothing"
    );

    // All back: the plan is the one without dynamicStableScale.
    let mut seen = dynamic(seen, 4);
    seen.canary_deployment = None;
    let done = plan(&seen, 2, &passed(), Some(&STEPS), Some((100, 0))).unwrap();
    assert_eq!(done.canary.stable_replicas, None);
    assert_eq!(done.canary.route, Some((100, 0)));
}

#[test]
fn with_dynamic_stable_scale_an_empty_stable_deployment_is_deleted_then_created_paused() {
    // Promoted at 100%: the canary runs all 4 pods, the stable none.
    let history = vec![entry(1, Outcome::Stable), entry(2, Outcome::Progressing)];
    let mut seen = dynamic(seen(history, Some((2, 4))), 0);
    seen.previous.canary = Some(status_at(&STEPS, 2, 3, at(990), at(900)));
    seen.model_pods = 4;
    let md = seen.md.clone();
    let promoted = revision(2, "2.0").served.unwrap();
    seen.canary_deployment = Some(settled(
        resources::canary_deployment(&md, &promoted, 2, 4, &Platform::default()),
        4,
    ));
    let dropping = plan(&seen, 2, &passed(), Some(&STEPS), Some((0, 100))).unwrap();
    assert_eq!(dropping.revisions.stable, Some(2));
    assert_eq!(dropping.canary.drop_stable, Some(Dependents::Delete));
    assert_eq!(dropping.canary.child, CanaryChild::Keep);
    assert_eq!(
        dropping.canary.route, None,
        "the canary's pods keep their traffic"
    );
    assert_eq!(
        (
            dropping.canary.stable_selects,
            dropping.canary.canary_selects
        ),
        (Some(2), Some(2))
    );

    seen.previous = dropping.revisions.clone();
    seen.deployment = None;
    seen.stable_running = None;
    let creating = plan(&seen, 2, &passed(), Some(&STEPS), Some((0, 100))).unwrap();
    assert_eq!(creating.canary.drop_stable, None);
    assert!(creating.canary.stable_paused);
    assert!(
        creating.canary.stable.is_none(),
        "with revision 2's template"
    );
    assert_eq!(creating.canary.stable_replicas, None, "at the full count");
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
    let plan = plan(&seen, 2, &passed(), Some(&STEPS), None).unwrap();
    assert_eq!(canary_replicas(&plan), Some((2, 2)), "25% of the HPA's 8");
}
