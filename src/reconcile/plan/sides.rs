//! The two Deployments of a canary, as one pass reads them and as the plan
//! wants them: the plan's types, and the readings `canary_plan` and
//! `handover` share.

use k8s_openapi::api::apps::v1::Deployment;

use crate::api::{CanaryStatus, ServedVersion};
use crate::reconcile::observe::Snapshot;
use crate::resources;
use crate::resources::route::Weights;
use crate::rollout::stable_scale::{self, Scale, Side};
use std::time::Duration;

use super::warm::WarmChild;

/// What the canary Deployment should be.
#[derive(Clone, Debug, PartialEq)]
pub enum CanaryChild {
    /// There is none and none is wanted.
    None,
    /// Run `served` as `revision` with exactly `replicas` pods. A canary
    /// that is no longer wanted (aborted, or the strategy changed) is
    /// scaled to 0 and kept until a canary of another revision needs the
    /// name (a selector cannot change).
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
    /// Delete the stable Deployment, and what becomes of its ReplicaSets:
    /// a promotion creates it again (`Handoff::Drop`, `Handoff::Orphan`).
    pub drop_stable: Option<Dependents>,
    /// What `<name>-previous` (the warm rollback window) should be.
    pub warm: WarmChild,
    /// The revision the model's Service selects; `None`: every pod of the
    /// model. Only while pods kept warm must get no traffic.
    pub service_selects: Option<i64>,
}

/// What deleting the stable Deployment does to its ReplicaSets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependents {
    /// Deleted with it (it runs no pod).
    Delete,
    /// Orphaned, pods and all, for `<name>-previous` to keep warm.
    Orphan,
}

/// The revision of the stable Deployment's pods, when they all run its
/// template (it may be scaling, not moving between revisions).
pub fn stable_at_rest(seen: &Snapshot) -> Option<i64> {
    let d = seen.deployment.as_deref()?;
    let status = d.status.as_ref()?;
    let uniform =
        observed(d) && status.updated_replicas.unwrap_or(0) == status.replicas.unwrap_or(0);
    seen.stable_running.filter(|_| uniform)
}

/// Whether the stable side shrinks as the canary grows.
pub fn dynamic(seen: &Snapshot) -> bool {
    seen.md
        .spec
        .rollout
        .canary
        .as_ref()
        .is_some_and(|c| c.dynamic_stable_scale)
}

/// How soon to look again while `dynamicStableScale` moves: a pass's
/// route write or a pod that goes wakes nothing else.
const SETTLING: Duration = Duration::from_secs(2);

/// The next step of `dynamicStableScale` toward `weight` percent on the
/// canary of `revision`, and when to look again if it has not settled;
/// `route`: the route's (stable, canary) weights as read this pass.
pub fn scaled(
    seen: &Snapshot,
    revision: i64,
    weight: i32,
    route: Option<Weights>,
) -> (Scale, Option<Duration>) {
    let side = |d: Option<&Deployment>| Side {
        replicas: d.and_then(|d| d.spec.as_ref()?.replicas).unwrap_or(0),
        available: available(d),
    };
    let canary = seen
        .canary_deployment
        .as_deref()
        .filter(|d| resources::revision_of(d) == Some(revision));
    let inputs = stable_scale::Inputs {
        full: seen.md.spec.replicas,
        weight,
        route: route.and_then(canary_share),
        stable: side(seen.deployment.as_deref()),
        canary: side(canary),
        pods: i32::try_from(seen.model_pods).unwrap_or(i32::MAX),
    };
    let next = stable_scale::scale(&inputs);
    let again = (!stable_scale::settled(&inputs, &next)).then_some(SETTLING);
    (next, again)
}

/// The canary's share of `weights`, in percent; `None` with no weight at
/// all.
pub fn canary_share((stable, canary): Weights) -> Option<i32> {
    let (stable, canary) = (i64::from(stable.max(0)), i64::from(canary.max(0)));
    let total = stable + canary;
    (total > 0).then(|| i32::try_from(canary * 100 / total).unwrap_or(100))
}

/// All traffic on the stable Service.
pub const STABLE_ONLY: Weights = (100, 0);

/// The Deployment controller has acted on the Deployment's latest spec.
pub fn observed(d: &Deployment) -> bool {
    d.status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .is_some_and(|seen| Some(seen) >= d.metadata.generation)
}

/// The stable Deployment's pod count: the spec's (an external scaler's
/// too), or the HPA's while it scales (read from the Deployment, whose
/// replicas the HPA owns).
pub fn stable_replicas(seen: &Snapshot) -> i32 {
    match seen.md.spec.hpa_scales() {
        true => seen
            .deployment
            .as_deref()
            .and_then(|d| d.spec.as_ref()?.replicas)
            .unwrap_or(1),
        false => seen.md.spec.replicas,
    }
}

/// Available pods of the canary's current template: none until the
/// Deployment controller has seen its latest spec.
pub fn available(deployment: Option<&Deployment>) -> i32 {
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
