//! Children that exist only while the spec asks for them (the HPA with
//! `autoscaling`, the PodDisruptionBudget with `disruptionBudget`): applied
//! like the others when asked for, deleted when no longer, and then only
//! the object the cache showed as ours.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apply::ensure;
use super::{Record, record};
use crate::cache::cached;
use crate::error::Error;
use crate::reconcile::context::Context;
use crate::reconcile::events::{self, Announcement};
use crate::reconcile::observe::Snapshot;
use crate::resources::{self, owned_by};

/// What an optional child needed.
pub enum Done {
    /// Applied (or found converged), as every child is recorded.
    Applied(Record),
    /// Deleted, with the Event that says why.
    Deleted(Announcement),
}

/// The HPA, then the disruption budget: what each needed, in that order.
/// The first error stops, like any child's.
pub async fn ensure_all(
    seen: &Snapshot,
    ctx: &Context,
    model_name: &str,
) -> Result<Vec<Done>, Error> {
    let (md, namespace, name) = (seen.md.as_ref(), &seen.namespace, &seen.name);
    let stores = &ctx.stores;
    let hpa = resources::hpa(md, model_name);
    let hpa = ensure_optional(
        seen,
        ctx,
        "HorizontalPodAutoscaler",
        hpa,
        cached(&stores.hpas, namespace, name),
        events::hpa_deleted,
    )
    .await?;
    let pdb = resources::pdb(md, model_name);
    let pdb = ensure_optional(
        seen,
        ctx,
        "PodDisruptionBudget",
        pdb,
        cached(&stores.pdbs, namespace, name),
        events::pdb_deleted,
    )
    .await?;
    Ok(hpa.into_iter().chain(pdb).collect())
}

/// Makes the optional child `kind` match `desired`: applied when `Some`,
/// deleted when `None` and `cached` (the reflector's copy) is ours.
/// `deleted` is the Event announcing a deletion.
async fn ensure_optional<K>(
    seen: &Snapshot,
    ctx: &Context,
    kind: &'static str,
    desired: Option<K>,
    cached: Option<Arc<K>>,
    deleted: fn() -> Announcement,
) -> Result<Option<Done>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api = Api::<K>::namespaced(ctx.client.clone(), &seen.namespace);
    if let Some(desired) = desired {
        let done = ensure(&api, kind, desired, cached).await?;
        return Ok(Some(Done::Applied(record(kind, done))));
    }
    match cached.filter(|c| owned_by(c.as_ref(), seen.md.as_ref())) {
        Some(ours) => {
            delete_ours(&api, ours.as_ref(), DeleteParams::foreground()).await?;
            Ok(Some(Done::Deleted(deleted())))
        }
        None => Ok(None),
    }
}

/// Deletes the child the cache showed as ours, and only that object: the
/// uid precondition makes the API server refuse (409) if the name now
/// belongs to another object, which is then left alone. `how` says what
/// becomes of its dependents (its propagation policy).
pub(super) async fn delete_ours<K>(api: &Api<K>, child: &K, how: DeleteParams) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: child.uid(),
            resource_version: None,
        }),
        ..how
    };
    match api.delete(&child.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
