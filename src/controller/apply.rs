//! Server-side apply of one child under the operator's field manager, sent
//! only when the child is missing, out of date or drifted.

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::drift::{self, Need};
use super::error::Error;
use crate::resources::labels::APPLIED_HASH;
use crate::resources::labels::MANAGER;

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
            e => Error::Kube(e),
        })?;
    Ok(Applied {
        object: Arc::new(object),
        need,
    })
}
