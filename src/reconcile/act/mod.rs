//! Act: makes the children match the plan. The Deployment goes first: it is
//! the child the API server is most likely to refuse, and a refusal must
//! leave everything else as it was.

pub mod apply;
pub mod drift;
pub mod http_route;
mod optional;
mod warm;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::DeleteParams;
use kube::{Api, Resource, ResourceExt};

use super::context::Context;
use super::events::{self, Announcement};
use super::observe::Snapshot;
use super::plan::Plan;
use crate::api::ModelDeployment;
use crate::cache::cached;
use crate::cache::children::decoded;
use crate::error::Error;
use crate::reconcile::plan::canary_plan::{CanaryChild, Dependents};
use crate::resources::route::{Weights, split_services};
use crate::status::Blocker;
use crate::{reasons, resources};
use apply::{Applied, ensure};
use drift::Need;
use http_route::Route;
use optional::{Done, delete_ours};

/// What acting did.
pub struct Acted {
    /// The Deployment as it now is, when it was looked at.
    pub deployment: Option<Arc<Deployment>>,
    /// Why a child could not be applied: the API server refused it, or its
    /// name is taken by an object we do not own. The user's to fix.
    pub invalid: Option<Blocker>,
    pub announcements: Vec<Announcement>,
}

pub async fn apply_children(
    seen: &Snapshot,
    plan: &Plan,
    route: Option<&Route>,
    ctx: &Context,
) -> Result<Acted, Error> {
    let md = seen.md.as_ref();
    let namespace = seen.namespace.as_str();
    let mut applied = Vec::new();
    let mut announcements = Vec::new();

    // While a canary runs, the stable Deployment keeps the Stable revision.
    let (revision, served) = match &plan.canary.stable {
        Some((revision, served)) => (*revision, served),
        None => (plan.decision.target, &plan.target),
    };
    let mut desired = resources::deployment(md, served, revision, &ctx.platform);
    if let Some(spec) = desired.spec.as_mut() {
        if plan.canary.stable_paused {
            spec.paused = Some(true);
        }
        if let Some(replicas) = plan.canary.stable_replicas {
            spec.replicas = Some(replicas);
        }
    }
    let api = Api::<Deployment>::namespaced(ctx.client.clone(), namespace);
    let deployment = match (plan.canary.drop_stable, seen.deployment.as_deref()) {
        // About to take the canary's pods: its old ReplicaSets go with it
        // (it runs no pod) or are orphaned, pods and all, for
        // `<name>-previous` to keep (`rollout::promotion`); the next passes
        // create it again.
        (Some(dependents), Some(live)) if resources::owned_by(live, md) => {
            let how = match dependents {
                Dependents::Delete => DeleteParams::background(),
                Dependents::Orphan => DeleteParams::orphan(),
            };
            delete_ours(&api, live, how).await?;
            seen.deployment.clone()
        }
        (Some(_), None) => None,
        _ => match ensure(&api, "Deployment", desired, seen.deployment.clone()).await {
            Ok(done) => {
                let object = done.object.clone();
                applied.push(record("Deployment", done));
                Some(object)
            }
            Err(e) => return blocked(e, seen.deployment.clone(), announcements),
        },
    };

    // A canary's share of a route goes down before its pods do, and up
    // only once its Service exists. Before this pass has applied the split
    // Services, the route is written only if both already are ours.
    let weights = route.zip(plan.canary.route);
    let lowering = weights.filter(|(r, w)| r.backends_ours && lowers(r, *w));
    if let Some((route, weights)) = lowering {
        http_route::set_weights(ctx.client.clone(), namespace, route, weights).await?;
    }

    match apply_canary(seen, plan, &api, &ctx.platform).await {
        Ok(Some(done)) => applied.push(record("Deployment", done)),
        Ok(None) => {}
        Err(e) => return blocked(e, deployment, announcements),
    }

    match warm::apply(seen, plan, &api, &ctx.platform).await {
        Ok(Some(done)) => applied.push(record("Deployment", done)),
        Ok(None) => {}
        Err(e) => return blocked(e, deployment, announcements),
    }

    match apply_services(md, namespace, plan, route.is_some(), ctx).await {
        Ok(services) => applied.extend(services),
        Err(e) => return blocked(e, deployment, announcements),
    }
    if let Some((route, weights)) = weights.filter(|_| lowering.is_none()) {
        http_route::set_weights(ctx.client.clone(), namespace, route, weights).await?;
    }

    // Optional children last.
    match optional::ensure_all(seen, ctx, plan.target.model_name()).await {
        Ok(done) => {
            for done in done {
                match done {
                    Done::Applied(record) => applied.push(record),
                    Done::Deleted(announcement) => announcements.push(announcement),
                }
            }
        }
        Err(e) => return blocked(e, deployment, announcements),
    }
    announcements.extend(events::for_children(
        md,
        &applied,
        plan.decision.target,
        &plan.target.model.version,
    ));
    Ok(Acted {
        deployment,
        invalid: None,
        announcements,
    })
}

/// The model's Service and, with a traffic route, the stable and canary
/// Services the route splits between.
async fn apply_services(
    md: &ModelDeployment,
    namespace: &str,
    plan: &Plan,
    routed: bool,
    ctx: &Context,
) -> Result<Vec<Record>, Error> {
    let api = Api::<Service>::namespaced(ctx.client.clone(), namespace);
    let model_name = plan.target.model_name();
    let mut main = resources::service(md, model_name);
    if let Some(revision) = plan.canary.service_selects
        && let Some(selector) = main.spec.as_mut().and_then(|s| s.selector.as_mut())
    {
        selector.insert(
            resources::labels::REVISION.to_string(),
            revision.to_string(),
        );
    }
    let mut desired = vec![main];
    if routed {
        desired.extend(split_services(
            md,
            model_name,
            plan.canary.stable_selects,
            plan.canary.canary_selects,
        ));
    }
    let mut applied = Vec::new();
    for service in desired {
        let cached_service = decoded(cached(&ctx.stores.services, namespace, &service.name_any()))?;
        applied.push(record(
            "Service",
            ensure(&api, "Service", service, cached_service).await?,
        ));
    }
    Ok(applied)
}

/// `weights` gives the canary no more of the traffic than the route gives
/// it now (or the route's weights are unknown, edited by hand).
fn lowers(route: &Route, weights: Weights) -> bool {
    route.split.weights().is_none_or(|(stable, canary)| {
        let (to_stable, to_canary) = (i64::from(weights.0), i64::from(weights.1));
        let (stable, canary) = (i64::from(stable), i64::from(canary));
        to_canary * (stable + canary) <= canary * (to_stable + to_canary)
    })
}

/// The canary Deployment as planned: applied, left alone, or deleted.
async fn apply_canary(
    seen: &Snapshot,
    plan: &Plan,
    api: &Api<Deployment>,
    platform: &resources::Platform,
) -> Result<Option<Applied<Deployment>>, Error> {
    match &plan.canary.child {
        CanaryChild::None | CanaryChild::Keep => Ok(None),
        CanaryChild::Release => {
            if let Some(live) = seen.canary_deployment.as_deref() {
                delete_ours(api, live, DeleteParams::orphan()).await?;
            }
            Ok(None)
        }
        CanaryChild::Run {
            revision,
            served,
            replicas,
        } => {
            // A selector cannot change: a canary Deployment of another
            // revision (or an older operator's, selecting by track) goes,
            // with its pods, and the next pass creates this one.
            if let Some(live) = seen
                .canary_deployment
                .as_deref()
                .filter(|live| resources::selected_revision(live) != Some(*revision))
            {
                delete_ours(api, live, DeleteParams::background()).await?;
                return Ok(None);
            }
            let desired =
                resources::canary_deployment(&seen.md, served, *revision, *replicas, platform);
            let cached = seen.canary_deployment.clone();
            ensure(api, "Deployment", desired, cached).await.map(Some)
        }
    }
}

/// A child the user must fix (refused by the API server, or its name
/// taken by an object we do not own) stops acting and is reported; what
/// was already applied stays. Other errors are retried.
fn blocked(
    error: Error,
    deployment: Option<Arc<Deployment>>,
    announcements: Vec<Announcement>,
) -> Result<Acted, Error> {
    let invalid = match error {
        Error::Rejected { kind, message } => {
            Blocker::invalid(format!("the API server refused the {kind}: {message}"))
        }
        e @ Error::NameConflict { .. } => Blocker {
            reason: reasons::NAME_CONFLICT,
            message: e.to_string(),
        },
        e => return Err(e),
    };
    Ok(Acted {
        deployment,
        invalid: Some(invalid),
        announcements,
    })
}

/// A child applied: its kind, what applying it needed, and which it is.
type Record = (&'static str, Need, ObjectReference);

fn record<K: Resource<DynamicType = ()>>(kind: &'static str, done: Applied<K>) -> Record {
    (kind, done.need, done.object.object_ref(&()))
}
