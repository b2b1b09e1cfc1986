//! The canary part of the plan: from the rollout decision and the canary's
//! step, what the stable and canary Deployments run. Pure; `act` applies it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;

use crate::analysis::schedule::Analysed;
use crate::api::{CanaryStatus, ServedVersion};
use crate::gates::{Failure, Gate, Health};
use crate::reasons;
use crate::reconcile::observe::Snapshot;
use crate::resources;
use crate::resources::route::Weights;
use crate::rollout::canary::{self, Attempt, Inputs, Step};
use crate::rollout::decide::Decision;
use crate::rollout::promotion::{self, Handoff};
use crate::rollout::stable_scale::{self, Scale, Side};
use crate::rollout::{Progress, progress};

/// What the canary Deployment should be.
#[derive(Clone, Debug, PartialEq)]
pub enum CanaryChild {
    /// There is none and none is wanted.
    None,
    /// Run `served` as `revision` with exactly `replicas` pods. A canary
    /// that is no longer wanted (aborted, promoted, or the strategy changed)
    /// is scaled to 0, not deleted: the operator may not delete
    /// Deployments (garbage collection does that with the ModelDeployment),
    /// and the next canary reuses it.
    Run {
        revision: i64,
        served: Box<ServedVersion>,
        replicas: i32,
    },
    /// Leave it as it is: the promoted revision's canary keeps serving
    /// until the stable Deployment runs that revision on every pod.
    Keep,
    /// Delete it and orphan its ReplicaSet, which the (paused) stable
    /// Deployment then adopts, pods and all (`rollout::promotion`).
    Release,
}

/// The canary's share of one plan.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryPlan {
    pub status: Option<CanaryStatus>,
    pub child: CanaryChild,
    /// The revision the stable Deployment runs while a canary runs; `None`:
    /// the decided revision, as with RollingUpdate.
    pub stable: Option<(i64, ServedVersion)>,
    /// When a pause with a duration ends.
    pub requeue: Option<Duration>,
    /// The (stable, canary) weights of a Gateway API route, when the
    /// ModelDeployment splits through one; `None`: leave them as they are
    /// (a promoted canary keeps its share until the stable Deployment runs
    /// its revision on every pod).
    pub route: Option<Weights>,
    /// The revision the route's stable Service selects; `None`: every pod
    /// of the model (while the stable Deployment moves between revisions).
    pub stable_selects: Option<i64>,
    /// The revision the route's canary Service selects; `None`: no pod.
    pub canary_selects: Option<i64>,
    /// The stable Deployment is paused: it has the promoted revision's
    /// template and must not create pods for it while it takes the
    /// canary's.
    pub stable_paused: bool,
    /// The stable Deployment's replica count while `dynamicStableScale`
    /// moves it; `None`: the spec's.
    pub stable_replicas: Option<i32>,
    /// Delete the stable Deployment: it runs no pod, and a promotion
    /// creates it again (`Handoff::Drop`).
    pub drop_stable: bool,
}

impl CanaryPlan {
    fn rolling(seen: &Snapshot, requested: i64) -> Self {
        Self {
            status: None,
            child: retire(seen, requested),
            stable: None,
            requeue: None,
            route: Some(STABLE_ONLY),
            stable_selects: stable_at_rest(seen),
            canary_selects: None,
            stable_paused: false,
            stable_replicas: None,
            drop_stable: false,
        }
    }
}

/// The revision of the stable Deployment's pods, when they all run its
/// template (it may be scaling, not moving between revisions).
fn stable_at_rest(seen: &Snapshot) -> Option<i64> {
    let d = seen.deployment.as_deref()?;
    let status = d.status.as_ref()?;
    let uniform =
        observed(d) && status.updated_replicas.unwrap_or(0) == status.replicas.unwrap_or(0);
    seen.stable_running.filter(|_| uniform)
}

/// Whether the stable side shrinks as the canary grows.
fn dynamic(seen: &Snapshot) -> bool {
    seen.md
        .spec
        .rollout
        .canary
        .as_ref()
        .is_some_and(|c| c.dynamic_stable_scale)
}

/// The next step of `dynamicStableScale` toward `weight` percent on the
/// canary of `revision`; `route`: the route's (stable, canary) weights as
/// read this pass.
fn scaled(seen: &Snapshot, revision: i64, weight: i32, route: Option<Weights>) -> Scale {
    let side = |d: Option<&Deployment>| Side {
        replicas: d.and_then(|d| d.spec.as_ref()?.replicas).unwrap_or(0),
        available: available(d),
    };
    let canary = seen
        .canary_deployment
        .as_deref()
        .filter(|d| resources::revision_of(d) == Some(revision));
    stable_scale::scale(&stable_scale::Inputs {
        full: seen.md.spec.replicas,
        weight,
        route: route.and_then(canary_share),
        stable: side(seen.deployment.as_deref()),
        canary: side(canary),
        pods: i32::try_from(seen.model_pods).unwrap_or(i32::MAX),
    })
}

/// The canary's share of `weights`, in percent; `None` with no weight at
/// all.
fn canary_share((stable, canary): Weights) -> Option<i32> {
    let (stable, canary) = (i64::from(stable.max(0)), i64::from(canary.max(0)));
    let total = stable + canary;
    (total > 0).then(|| i32::try_from(canary * 100 / total).unwrap_or(100))
}

/// The revision of a canary Deployment left over.
fn left_over(seen: &Snapshot) -> Option<i64> {
    seen.canary_deployment
        .as_deref()
        .and_then(resources::revision_of)
}

/// All traffic on the stable Service.
const STABLE_ONLY: Weights = (100, 0);

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
        return CanaryPlan::rolling(seen, requested);
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
                return CanaryPlan::rolling(seen, requested);
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
            let (weight, replicas, stable_replicas) = match dynamic(seen) {
                true => {
                    let s = scaled(seen, target, status.weight, route);
                    (s.route, s.canary, Some(s.stable))
                }
                false => (
                    weight,
                    canary::replicas(status.weight, stable_replicas),
                    None,
                ),
            };
            CanaryPlan {
                route: Some((100 - weight, weight)),
                requeue: canary::pause_left(steps, &status, &seen.now),
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
                drop_stable: false,
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
            CanaryPlan {
                status: None,
                child,
                stable: None,
                requeue: None,
                route,
                stable_selects,
                canary_selects,
                stable_paused: false,
                stable_replicas: None,
                drop_stable: false,
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
    let s = scaled(seen, canary, 0, route);
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
        requeue: None,
        route: Some((100 - s.route, s.route)),
        stable_selects: stable_at_rest(seen),
        canary_selects: Some(canary),
        stable_paused: false,
        stable_replicas: Some(s.stable),
        drop_stable: false,
    })
}

/// A promotion that hands the canary's pods to the stable Deployment, while
/// it does; `None` once done (or with nothing to hand over).
fn handing_over(
    seen: &Snapshot,
    promoted: i64,
    requested: i64,
    route: Option<Weights>,
) -> Option<CanaryPlan> {
    let stable = seen.deployment.as_deref();
    let inputs = promotion::Inputs {
        promoted,
        full: stable_replicas(seen),
        stable: promotion::Stable {
            revision: stable.and_then(resources::revision_of),
            paused: stable.is_some_and(|d| d.spec.as_ref().and_then(|s| s.paused) == Some(true)),
            observed: stable.is_some_and(observed),
            updated: stable
                .and_then(|d| d.status.as_ref()?.updated_replicas)
                .unwrap_or(0),
            replicas: stable.and_then(|d| d.spec.as_ref()?.replicas).unwrap_or(0),
            pods: stable
                .and_then(|d| d.status.as_ref()?.replicas)
                .unwrap_or(0),
        },
        canary: seen.canary_deployment.as_deref().and_then(|d| {
            Some(promotion::Canary {
                revision: resources::revision_of(d)?,
                deleting: d.metadata.deletion_timestamp.is_some(),
                replicas: d.spec.as_ref()?.replicas.unwrap_or(1),
                available: available(Some(d)),
            })
        }),
        promoted_pods: seen.template_pods,
    };
    let handing = |child, stable_paused| CanaryPlan {
        status: None,
        child,
        stable: None,
        requeue: None,
        route: Some(STABLE_ONLY),
        stable_selects: Some(promoted),
        canary_selects: None,
        stable_paused,
        stable_replicas: None,
        drop_stable: false,
    };
    // Until the stable Service selects the promoted pods, the route keeps
    // its weights: both Services select them first.
    let retargeting = |child, stable_paused| CanaryPlan {
        route: None,
        canary_selects: Some(promoted),
        ..handing(child, stable_paused)
    };
    match promotion::handoff(&inputs) {
        Handoff::Fill => {
            let running = inputs.stable.revision?;
            let served = seen.served_of(promoted, requested)?;
            let stable_served = seen.served_of(running, requested)?;
            let (replicas, stable_replicas, route) = match dynamic(seen) {
                true => {
                    let s = scaled(seen, promoted, 100, route);
                    (s.canary, Some(s.stable), Some((100 - s.route, s.route)))
                }
                false => (inputs.full, None, None),
            };
            Some(CanaryPlan {
                child: CanaryChild::Run {
                    revision: promoted,
                    served: Box::new(served.clone()),
                    replicas,
                },
                stable: Some((running, stable_served.clone())),
                route,
                stable_selects: stable_at_rest(seen),
                canary_selects: Some(promoted),
                stable_replicas,
                ..handing(CanaryChild::Keep, false)
            })
        }
        Handoff::Drop => Some(CanaryPlan {
            drop_stable: true,
            ..retargeting(CanaryChild::Keep, false)
        }),
        Handoff::Pause => Some(retargeting(CanaryChild::Keep, true)),
        Handoff::Release => Some(handing(CanaryChild::Release, true)),
        Handoff::Adopting => Some(handing(CanaryChild::None, true)),
        Handoff::Done => None,
    }
}

/// The Deployment controller has acted on the Deployment's latest spec.
fn observed(d: &Deployment) -> bool {
    d.status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .is_some_and(|seen| Some(seen) >= d.metadata.generation)
}

/// The stable Deployment runs `revision` on every pod, all available.
fn stable_runs(deployment: Option<&Deployment>, revision: i64) -> bool {
    deployment.is_some_and(|d| {
        resources::revision_of(d) == Some(revision) && progress(d) == Progress::Complete
    })
}

/// The stable Deployment's pod count: the spec's (an external scaler's
/// too), or the HPA's while it scales (read from the Deployment, whose
/// replicas the HPA owns).
fn stable_replicas(seen: &Snapshot) -> i32 {
    match seen.md.spec.hpa_scales() {
        true => seen
            .deployment
            .as_deref()
            .and_then(|d| d.spec.as_ref()?.replicas)
            .unwrap_or(1),
        false => seen.md.spec.replicas,
    }
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

/// Available pods of the canary's current template: none until the
/// Deployment controller has seen its latest spec.
fn available(deployment: Option<&Deployment>) -> i32 {
    let Some(d) = deployment else {
        return 0;
    };
    let Some(status) = d.status.as_ref() else {
        return 0;
    };
    if status.observed_generation < d.metadata.generation {
        return 0;
    }
    status
        .available_replicas
        .unwrap_or(0)
        .min(status.updated_replicas.unwrap_or(0))
}
