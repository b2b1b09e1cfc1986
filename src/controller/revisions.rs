//! Revisions in the cluster: the spec's revision number (creating its
//! snapshot when new), the running revision's health, and pruning.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use super::act::owned_by;
use super::context::{Context, of_instance};
use super::error::Error;
use super::observe::Snapshot;
use super::status::Revisions;
use crate::api::ModelDeployment;
use crate::gates::{Failure, Health};
use crate::reasons;
use crate::rollout::health;
use crate::rollout::pod::WatchedPod;
use crate::rollout::revision::{self, Revision};
use crate::rollout::{Progress, progress};

/// The health of the revision the Deployment runs.
pub(super) fn health_of(
    current: Option<i64>,
    deployment: Option<&Deployment>,
    pods: &[Arc<WatchedPod>],
) -> Health {
    let (Some(current), Some(deployment)) = (current, deployment) else {
        return Health::Rolling;
    };
    // Only the Deployment's own pods: a stray pod with the model's labels
    // must not fail (or pass) a rollout.
    let name = deployment.name_any();
    let own = pods
        .iter()
        .map(Arc::as_ref)
        .filter(|p| health::owned_by_deployment(p, &name));
    if let Some(failure) = health::failure_of(own, current) {
        return Health::Failed(failure);
    }
    match progress(deployment) {
        Progress::Complete => Health::Complete,
        Progress::DeadlineExceeded { message } => Health::Failed(Failure {
            reason: reasons::PROGRESS_DEADLINE_EXCEEDED,
            message,
        }),
        _ => Health::Rolling,
    }
}

/// The revisions this ModelDeployment owns, from the cache.
pub(super) fn known_revisions(
    md: &ModelDeployment,
    namespace: &str,
    ctx: &Context,
) -> Vec<Revision> {
    of_instance(&ctx.stores.revisions, namespace, &md.name_any())
        .iter()
        .filter(|cr| owned_by(cr.as_ref(), md))
        .filter_map(|cr| revision::parse(cr))
        .collect()
}

/// The spec's revision number, creating its snapshot when it is new.
pub(super) async fn ensure_revision(seen: &Snapshot, ctx: &Context) -> Result<i64, Error> {
    let (md, served) = (seen.md.as_ref(), &seen.served);
    let previous = &seen.previous;
    let highest_recorded = previous
        .history
        .iter()
        .map(|e| e.revision)
        .chain(previous.requested)
        .max()
        .unwrap_or(0);
    let (number, is_new) = revision::resolve(&seen.known, served, highest_recorded);
    if !is_new {
        return Ok(number);
    }
    let api = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &seen.namespace);
    match api
        .create(&PostParams::default(), &revision::build(md, number, served))
        .await
    {
        Ok(_) => Ok(number),
        // The cache lagged behind our own create, or another operator took
        // the number: only the former may use it.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&revision::name(&md.name_any(), number)).await?;
            // Never built on, adopted or deleted: someone else's object.
            if !owned_by(&existing, md) {
                return Err(Error::NameConflict {
                    kind: "ControllerRevision",
                    namespace: seen.namespace.clone(),
                    name: existing.name_any(),
                });
            }
            match revision::parse(&existing) {
                Some(r) if r.hash == revision::served_hash(served) => Ok(number),
                _ => Err(Error::RevisionTaken { revision: number }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes snapshots of revisions the history no longer remembers.
pub(super) async fn prune_revisions(
    seen: &Snapshot,
    planned: &Revisions,
    ctx: &Context,
) -> Result<(), Error> {
    let remembered =
        |n: i64| planned.history.iter().any(|e| e.revision == n) || planned.requested == Some(n);
    let api = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &seen.namespace);
    for r in seen.known.iter().filter(|r| !remembered(r.number)) {
        match api
            .delete(
                &revision::name(&seen.name, r.number),
                &DeleteParams::default(),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
