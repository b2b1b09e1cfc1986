//! Revisions in the cluster: the snapshots a pass needs, the spec's
//! revision number (creating its snapshot when new), and pruning those the
//! history no longer remembers.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::observe::Snapshot;
use crate::cache::snapshots::Key;
use crate::error::Error;
use crate::resources::owned_by;
use crate::rollout::revision;
use crate::status::Revisions;

/// Reads the snapshots of the revisions this pass may need
/// (`Snapshot::needed_revisions`): from the memo, else with one GET each.
/// The cache keeps no snapshot data, so a pass never decodes the whole
/// history. A snapshot that is gone, not ours or damaged stays unread, as
/// if the revision were unknown.
pub async fn read_snapshots(seen: &mut Snapshot, ctx: &Context) -> Result<(), Error> {
    let needed = seen.needed_revisions();
    let requested_hash = revision::served_hash(&seen.served);
    let api = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &seen.namespace);
    let (md, namespace, name) = (seen.md.clone(), seen.namespace.clone(), seen.name.clone());
    for known in seen.known.iter_mut() {
        if known.served.is_some() || !needed.contains(&known.number) {
            continue;
        }
        if known.hash == requested_hash {
            known.served = Some(seen.served.clone());
            continue;
        }
        let key = Key {
            namespace: namespace.clone(),
            name: name.clone(),
            number: known.number,
            hash: known.hash.clone(),
        };
        let json = match ctx.snapshots.get(&key) {
            Some(json) => json,
            None => {
                let Some(cr) = api.get_opt(&revision::name(&name, known.number)).await? else {
                    continue;
                };
                let parsed = revision::parse(&cr)
                    .filter(|_| owned_by(&cr, &md))
                    .filter(|p| p.number == known.number && p.hash == known.hash)
                    .and_then(|p| p.served);
                let Some(json) = parsed.and_then(|s| serde_json::to_string(&s).ok()) else {
                    continue;
                };
                let json: Arc<str> = json.into();
                ctx.snapshots.insert(key, json.clone());
                json
            }
        };
        known.served = serde_json::from_str(&json).ok();
    }
    Ok(())
}

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

/// Deletes snapshots of revisions the history no longer remembers: each
/// the object the cache showed as ours (a uid precondition), never another
/// object that has taken its name since.
pub async fn prune_revisions(
    seen: &Snapshot,
    planned: &Revisions,
    ctx: &Context,
) -> Result<(), Error> {
    let remembered =
        |n: i64| planned.history.iter().any(|e| e.revision == n) || planned.requested == Some(n);
    let api = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &seen.namespace);
    for r in seen.known.iter().filter(|r| !remembered(r.number)) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: r.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api
            .delete(&revision::name(&seen.name, r.number), &params)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
