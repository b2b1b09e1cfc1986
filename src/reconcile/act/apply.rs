//! Server-side apply of one child under the operator's field manager, sent
//! only when the child is missing, out of date or drifted.

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::drift::{self, Need};
use crate::error::Error;
use crate::resources::labels::APPLIED_HASH;
use crate::resources::labels::MANAGER;
use crate::resources::owned_by_same_controller;

/// What `ensure` found and did.
pub struct Applied<K> {
    /// The child as it now is: the apply response when one was sent.
    pub object: Arc<K>,
    pub need: Need,
}

/// `desired` with its APPLIED_HASH annotation, and its JSON form.
pub fn stamp<K>(kind: &'static str, mut desired: K) -> Result<(K, serde_json::Value), Error>
where
    K: Resource + Serialize,
{
    let serialize = |source| Error::Serialize { kind, source };
    let hash = drift::hash_of(&desired).map_err(serialize)?;
    desired
        .annotations_mut()
        .insert(APPLIED_HASH.to_string(), hash);
    let json = serde_json::to_value(&desired).map_err(serialize)?;
    Ok((desired, json))
}

/// Makes the child match `desired`. `cached` is the reflector's copy.
pub async fn ensure<K>(
    api: &Api<K>,
    kind: &'static str,
    desired: K,
    cached: Option<Arc<K>>,
) -> Result<Applied<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let serialize = |source| Error::Serialize { kind, source };
    let (desired, desired_json) = stamp(kind, desired)?;

    let name = desired.name_any();
    let need = match cached {
        // The cache justifies the apply (or its absence): no read first.
        Some(object) => {
            refuse_foreign(kind, &desired, object.as_ref())?;
            let need = drift::need(&desired_json, Some(object.as_ref())).map_err(serialize)?;
            if need == Need::Nothing {
                return Ok(Applied { object, need });
            }
            need
        }
        // Not in the cache: new, or written so recently that the watch has
        // not delivered it yet. One read tells, and keeps a lagging cache
        // from causing a second apply of the same change.
        None => {
            let fresh = api.get_opt(&name).await?;
            if let Some(found) = &fresh {
                refuse_foreign(kind, &desired, found)?;
            }
            let need = drift::need(&desired_json, fresh.as_ref()).map_err(serialize)?;
            if let (Need::Nothing, Some(object)) = (need, fresh) {
                return Ok(Applied {
                    object: Arc::new(object),
                    need,
                });
            }
            need
        }
    };
    let params = PatchParams::apply(MANAGER).force();
    let object = api
        .patch(&name, &params, &Patch::Apply(&desired))
        .await
        .map_err(|e| match e {
            // The API server's own validation is the last word on what a valid
            // child is; its refusal is the user's to fix, not a retryable error.
            kube::Error::Api(status) if status.code == 422 || status.code == 400 => {
                Error::Rejected {
                    kind,
                    message: status.message.clone(),
                }
            }
            // Server-side apply cannot even build the patch from what the
            // spec says (two list items with one key, e.g. two mounts at
            // one path): a 500 that no retry can fix.
            kube::Error::Api(status)
                if status.code == 500 && status.message.contains(TYPED_PATCH_FAILED) =>
            {
                Error::Rejected {
                    kind,
                    message: status.message.clone(),
                }
            }
            e => Error::Kube(e),
        })?;
    Ok(Applied {
        object: Arc::new(object),
        need,
    })
}

/// How the API server words a server-side apply it cannot type.
const TYPED_PATCH_FAILED: &str = "failed to create typed patch object";

/// An existing object is ours only when it carries the controller owner
/// reference `desired` carries (the ModelDeployment's uid). Anything else,
/// an object of another team or one that merely copies our labels, is
/// never patched: a forced apply would take its fields over, and the owner
/// reference it would gain would let the garbage collector delete it with
/// the ModelDeployment.
fn refuse_foreign<K: Resource>(kind: &'static str, desired: &K, existing: &K) -> Result<(), Error> {
    if owned_by_same_controller(desired, existing) {
        return Ok(());
    }
    Err(Error::NameConflict {
        kind,
        namespace: existing.namespace().unwrap_or_default(),
        name: existing.name_any(),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn service(owner: Option<(&str, Option<bool>)>) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some("x".into());
        s.metadata.namespace = Some("team-a".into());
        if let Some((uid, controller)) = owner {
            s.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "mlops.dev/v1alpha1".into(),
                kind: "ModelDeployment".into(),
                name: "x".into(),
                uid: uid.into(),
                controller,
                block_owner_deletion: Some(true),
            }]);
        }
        s
    }

    #[test]
    fn only_a_child_with_our_controller_reference_is_ours() {
        let desired = service(Some(("uid-1", Some(true))));
        let cases = [
            ("ours", service(Some(("uid-1", Some(true)))), true),
            ("no owner (kubectl create)", service(None), false),
            (
                "another controller",
                service(Some(("uid-2", Some(true)))),
                false,
            ),
            (
                "our uid, but not as controller",
                service(Some(("uid-1", None))),
                false,
            ),
        ];
        for (what, existing, ours) in cases {
            assert_eq!(
                refuse_foreign("Service", &desired, &existing).is_ok(),
                ours,
                "{what}"
            );
        }
        let err = refuse_foreign("Service", &desired, &service(None)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Service team-a/x exists and is not owned")
        );
    }

    #[test]
    fn desired_without_controller_reference_owns_nothing() {
        assert!(!owned_by_same_controller(&service(None), &service(None)));
    }
}
