//! A promotion's handover, as planned: which step `rollout::promotion`
//! says comes next, and what each Deployment, Service and the route do in
//! it. With a warm rollback window the handover keeps the previous pods in
//! `<name>-previous`, and a rollback inside the window hands them back.

use crate::reconcile::observe::Snapshot;
use crate::resources;
use crate::resources::route::Weights;
use crate::rollout::promotion::{self, Handoff};

use super::sides::{
    CanaryChild, CanaryPlan, Dependents, STABLE_ONLY, available, dynamic, observed, scaled,
    stable_at_rest, stable_replicas,
};
use super::warm::{self, WarmChild};

/// A promotion that hands the canary's pods (or, rolling back inside the
/// warm window, the kept ones) to the stable Deployment, while it does;
/// `None` once done (or with nothing to hand over).
pub fn handing_over(
    seen: &Snapshot,
    promoted: i64,
    requested: i64,
    route: Option<Weights>,
) -> Option<CanaryPlan> {
    let stable = seen.deployment.as_deref();
    let of_promoted = |d: &Option<std::sync::Arc<k8s_openapi::api::apps::v1::Deployment>>| {
        d.as_deref()
            .filter(|d| resources::revision_of(d) == Some(promoted))
            .cloned()
    };
    // The kept pods are handed back only when no canary of the revision
    // holds any.
    let canary = of_promoted(&seen.canary_deployment);
    let from_warm = canary.is_none() && of_promoted(&seen.warm_deployment).is_some();
    let holder = canary.or_else(|| of_promoted(&seen.warm_deployment));
    let keep = match from_warm {
        true => None,
        false => warm::keep(seen, promoted),
    };
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
            deleting: stable.is_some_and(|d| d.metadata.deletion_timestamp.is_some()),
        },
        canary: holder.as_ref().and_then(|d| {
            Some(promotion::Canary {
                revision: resources::revision_of(d)?,
                deleting: d.metadata.deletion_timestamp.is_some(),
                replicas: d.spec.as_ref()?.replicas.unwrap_or(1),
                available: available(Some(d)),
            })
        }),
        promoted_pods: seen.template_pods,
        keep,
    };
    // The previous pods through the handover: kept (running, once held),
    // handed back, or left alone.
    let kept = |paused| match keep {
        Some(k) => warm::run(seen, k.revision, requested, inputs.full, paused),
        None => WarmChild::Leave,
    };
    let service_selects = (keep.is_some() || from_warm).then_some(promoted);
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
        drop_stable: None,
        warm: kept(false),
        service_selects,
    };
    // Until the stable Service selects the promoted pods, the route keeps
    // its weights: both Services select them first.
    let retargeting = |child, stable_paused| CanaryPlan {
        route: None,
        canary_selects: Some(promoted),
        ..handing(child, stable_paused)
    };
    // While the previous pods are set aside they still serve, as the
    // stable side.
    let setting_aside = |drop_stable| CanaryPlan {
        drop_stable,
        stable_selects: keep.map(|k| k.revision),
        service_selects: None,
        warm: kept(true),
        ..retargeting(CanaryChild::Keep, false)
    };
    // Handing the kept pods back: the canary is not involved.
    let (release, leave) = match from_warm {
        true => (CanaryChild::Keep, WarmChild::Release),
        false => (CanaryChild::Release, kept(false)),
    };
    match promotion::handoff(&inputs) {
        Handoff::Fill => {
            let running = inputs.stable.revision?;
            let served = seen.served_of(promoted, requested)?;
            let stable_served = seen.served_of(running, requested)?;
            let (replicas, stable_replicas, route, requeue) = match dynamic(seen) {
                true => {
                    let (s, again) = scaled(seen, promoted, 100, route);
                    let route = Some((100 - s.route, s.route));
                    (s.canary, Some(s.stable), route, again)
                }
                false => (inputs.full, None, None, None),
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
                requeue,
                service_selects: None,
                warm: WarmChild::Leave,
                ..handing(CanaryChild::Keep, false)
            })
        }
        Handoff::Drop => Some(CanaryPlan {
            drop_stable: Some(Dependents::Delete),
            ..retargeting(CanaryChild::Keep, false)
        }),
        Handoff::Orphan => Some(setting_aside(Some(Dependents::Orphan))),
        Handoff::Warm => Some(setting_aside(None)),
        Handoff::Pause => Some(CanaryPlan {
            warm: match from_warm {
                true => WarmChild::Leave,
                false => kept(false),
            },
            ..retargeting(CanaryChild::Keep, true)
        }),
        Handoff::Release => Some(CanaryPlan {
            warm: leave,
            ..handing(release, true)
        }),
        Handoff::Adopting => Some(CanaryPlan {
            warm: match from_warm {
                true => WarmChild::Leave,
                false => kept(false),
            },
            ..handing(CanaryChild::None, true)
        }),
        Handoff::Done => None,
    }
}
