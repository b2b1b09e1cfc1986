//! The canary part of the plan: from the rollout decision and the canary's
//! step, what the stable and canary Deployments run. Pure; `act` applies it.

use k8s_openapi::api::apps::v1::Deployment;

use crate::analysis::schedule::Analysed;
use crate::api::CanaryStatus;
use crate::gates::{Failure, Gate, Health};
use crate::reasons;
use crate::reconcile::observe::Snapshot;
use crate::resources;
use crate::resources::route::Weights;
use crate::rollout::canary::{self, Attempt, Inputs, Step};
use crate::rollout::decide::Decision;

use super::handover::handing_over;
pub use super::sides::{CanaryChild, CanaryPlan, Dependents};
use super::sides::{
    STABLE_ONLY, available, canary_share, dynamic, scaled, stable_at_rest, stable_replicas,
};
use super::warm;
use crate::rollout::{Progress, progress};

/// No canary strategy: a canary left over is retired, all traffic on the
/// stable side.
fn rolling(seen: &Snapshot, requested: i64) -> CanaryPlan {
    CanaryPlan {
        status: None,
        child: retire(seen, requested),
        stable: None,
        requeue: None,
        route: Some(STABLE_ONLY),
        stable_selects: stable_at_rest(seen),
        canary_selects: None,
        stable_paused: false,
        stable_replicas: None,
        drop_stable: None,
        warm: warm::gone(seen),
        service_selects: None,
    }
}

/// The revision of a canary Deployment left over.
fn left_over(seen: &Snapshot) -> Option<i64> {
    seen.canary_deployment
        .as_deref()
        .and_then(resources::revision_of)
}

/// A canary Deployment left over, scaled to 0 (as it runs: its template
/// unchanged). One whose revision is no longer known is left alone.
fn retire(seen: &Snapshot, requested: i64) -> CanaryChild {
    let Some(revision) = seen
        .canary_deployment
        .as_deref()
        .and_then(resources::revision_of)
    else {
        return CanaryChild::None;
    };
    match seen.served_of(revision, requested) {
        Some(served) => CanaryChild::Run {
            revision,
            served: Box::new(served.clone()),
            replicas: 0,
        },
        None => CanaryChild::Keep,
    }
}

/// Before the decision: the running canary's next step, and the gate the
/// decision sees (pending until the last step; failed on a failed check or
/// an abort by hand, at any step).
pub fn step(seen: &Snapshot, steps: &[Step], analysed: &Analysed) -> (Option<CanaryStatus>, Gate) {
    let gate = analysed.gate.clone();
    let Some(current) = seen.current.filter(|_| seen.canary_is_current) else {
        return (None, gate);
    };
    let stored = seen
        .previous
        .canary
        .as_ref()
        .filter(|c| c.revision == current);
    let aborted = stored
        .filter(|c| seen.abort == Some(Attempt::of(c)))
        .map(|c| Failure {
            reason: reasons::ABORTED,
            message: format!(
                "canary aborted by hand at {} (kubectl model abort)",
                c.summary
            ),
        });
    // A canary that fails in this pass stays at the step it failed at: the
    // history names that step, not the next one.
    let failing = aborted.is_some()
        || matches!(gate, Gate::Failed(_))
        || matches!(seen.health, Health::Failed(_));
    let status = match stored.filter(|_| failing) {
        Some(held) => held.clone(),
        None => canary::advance(&Inputs {
            steps,
            revision: current,
            stored: seen.previous.canary.as_ref(),
            stable_replicas: stable_replicas(seen),
            canary_available: available(seen.canary_deployment.as_deref()),
            analysis: analysed.status.as_ref(),
            gated: seen.md.spec.rollout.analysis.is_some(),
            promotion: seen.promotion,
            now: &seen.now,
        }),
    };
    let filled = available(seen.canary_deployment.as_deref())
        >= canary::replicas(100, stable_replicas(seen));
    let gate = match canary::gate(&status, gate, aborted, filled) {
        Gate::Failed(failure) => Gate::Failed(at_step(failure, Some(&status))),
        other => other,
    };
    (Some(status), gate)
}

/// A canary's failure says at which step it happened, for history, Events
/// and alerts (an abort by hand says so itself).
pub fn at_step(failure: Failure, canary: Option<&CanaryStatus>) -> Failure {
    match canary {
        Some(c) if failure.reason != reasons::ABORTED => Failure {
            message: format!("{} (canary at {})", failure.message, c.summary),
            ..failure
        },
        _ => failure,
    }
}

/// After the decision: what each Deployment runs.
pub fn children(
    seen: &Snapshot,
    steps: Option<&[Step]>,
    stepped: Option<CanaryStatus>,
    decision: &Decision,
    requested: i64,
    route: Option<Weights>,
) -> CanaryPlan {
    let Some(steps) = steps else {
        return rolling(seen, requested);
    };
    let target = decision.target;
    let stable_replicas = stable_replicas(seen);
    match decision.stable {
        // A revision other than the Stable one runs: as the canary, next
        // to the Stable revision. Unless the stable Deployment already runs
        // it: then it was promoted, and this pass's ModelDeployment predates
        // the status that says so (its watch lags the Deployment's). Acting
        // as a canary again would take it back to step 1.
        Some(stable) if stable != target && seen.stable_running != Some(target) => {
            let (Some(served), Some(stable_served)) = (
                seen.served_of(target, requested),
                seen.served_of(stable, requested),
            ) else {
                return rolling(seen, requested);
            };
            let status = stepped.filter(|s| s.revision == target).unwrap_or_else(|| {
                canary::status_at(steps, target, 0, seen.now.clone(), seen.now.clone())
            });
            // A backend without a ready pod would fail its share of the
            // requests: the canary gets its weight once it serves.
            let weight = match serving(seen.canary_deployment.as_deref(), target) {
                true => status.weight,
                false => 0,
            };
            let (weight, replicas, stable_replicas, settling) = match dynamic(seen) {
                true => {
                    let (s, again) = scaled(seen, target, status.weight, route);
                    (s.route, s.canary, Some(s.stable), again)
                }
                false => (
                    weight,
                    canary::replicas(status.weight, stable_replicas),
                    None,
                    None,
                ),
            };
            let requeue = [canary::pause_left(steps, &status, &seen.now), settling]
                .into_iter()
                .flatten()
                .min();
            CanaryPlan {
                route: Some((100 - weight, weight)),
                requeue,
                child: CanaryChild::Run {
                    revision: target,
                    served: Box::new(served.clone()),
                    replicas,
                },
                status: Some(status),
                stable: Some((stable, stable_served.clone())),
                stable_selects: stable_at_rest(seen),
                canary_selects: Some(target),
                stable_paused: false,
                stable_replicas,
                drop_stable: None,
                warm: warm::gone(seen),
                service_selects: None,
            }
        }
        // The Stable revision (or a first rollout) runs in the stable
        // Deployment; a canary left over was promoted or aborted.
        _ => {
            if let Some(plan) = handing_over(seen, target, requested, route) {
                return plan;
            }
            let left = left_over(seen);
            if let Some(plan) = left
                .filter(|c| *c != target && dynamic(seen))
                .and_then(|c| scaling_back(seen, c, requested, route))
            {
                return plan;
            }
            // A promoted canary keeps its pods until the stable Deployment
            // serves its revision on every pod, so capacity never dips;
            // meanwhile the stable Service selects every pod of the model.
            let (child, route, stable_selects, canary_selects) = match left {
                Some(c) if c == target && !stable_runs(seen.deployment.as_deref(), target) => {
                    (CanaryChild::Keep, None, None, left)
                }
                _ => (
                    retire(seen, requested),
                    Some(STABLE_ONLY),
                    stable_at_rest(seen),
                    None,
                ),
            };
            let kept = warm::after_promotion(seen, target, requested);
            CanaryPlan {
                status: None,
                child,
                stable: None,
                requeue: kept.requeue,
                route,
                stable_selects,
                canary_selects,
                stable_paused: false,
                stable_replicas: None,
                drop_stable: None,
                warm: kept.child,
                service_selects: kept.service_selects,
            }
        }
    }
}

/// A canary aborted, rolled back or replaced under `dynamicStableScale`:
/// stable pods come back before the route returns to them, and the
/// canary's pods go last. `None` once the canary has no pod and no share.
fn scaling_back(
    seen: &Snapshot,
    canary: i64,
    requested: i64,
    route: Option<Weights>,
) -> Option<CanaryPlan> {
    let (s, again) = scaled(seen, canary, 0, route);
    let full = seen.md.spec.replicas;
    let at_rest = route.and_then(canary_share) == Some(0) && s.stable >= full;
    if at_rest && s.canary == 0 {
        return None;
    }
    let served = seen.served_of(canary, requested)?;
    Some(CanaryPlan {
        status: None,
        child: CanaryChild::Run {
            revision: canary,
            served: Box::new(served.clone()),
            replicas: s.canary,
        },
        stable: None,
        requeue: again,
        route: Some((100 - s.route, s.route)),
        stable_selects: stable_at_rest(seen),
        canary_selects: Some(canary),
        stable_paused: false,
        stable_replicas: Some(s.stable),
        drop_stable: None,
        warm: warm::gone(seen),
        service_selects: None,
    })
}

/// The stable Deployment runs `revision` on every pod, all available.
fn stable_runs(deployment: Option<&Deployment>, revision: i64) -> bool {
    deployment.is_some_and(|d| {
        resources::revision_of(d) == Some(revision) && progress(d) == Progress::Complete
    })
}

/// The canary Deployment runs `revision` and has an available pod (of this
/// or an earlier step: a step's new pods are not waited for).
fn serving(deployment: Option<&Deployment>, revision: i64) -> bool {
    deployment.is_some_and(|d| {
        resources::revision_of(d) == Some(revision)
            && d.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .is_some_and(|n| n > 0)
    })
}
