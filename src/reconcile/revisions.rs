//! Revisions in the cluster: the spec's revision number (creating its
//! snapshot when new), and pruning those the history no longer remembers.

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::observe::Snapshot;
use crate::error::Error;
use crate::resources::owned_by;
use crate::rollout::revision;
use crate::status::Revisions;

/// The spec's revision number, creating its snapshot when it is new.
pub async fn ensure_revision(seen: &Snapshot, ctx: &Context) -> Result<i64, Error> {
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
pub async fn prune_revisions(
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
