//! The ModelDeployment as the controller's cache keeps it. Decoded, one is
//! about 6 KB in memory (a 2.2 KB struct of inline options plus its strings
//! and lists); its spec and status as compact JSON are about 1.5 KB. The
//! cache keeps the metadata decoded (keys, owner matching, the error
//! policy) and the rest as JSON, decoded once at the start of each pass:
//! about 4 KB less per model, 40 MB at 10,000.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde::{Deserialize, Deserializer, Serialize};

use crate::api::{ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus};

/// A cached ModelDeployment: metadata, and spec and status as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedModel {
    pub metadata: ObjectMeta,
    body: Box<str>,
}

/// A ModelDeployment's cache key, also for the reconcile triggers.
pub type ModelRef = ObjectRef<CachedModel>;

/// What `body` holds, borrowed for writing.
#[derive(Serialize)]
struct BodyRef<'a> {
    spec: &'a ModelDeploymentSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a ModelDeploymentStatus>,
}

/// What `body` holds, owned for reading.
#[derive(Deserialize)]
struct Body {
    spec: ModelDeploymentSpec,
    #[serde(default)]
    status: Option<ModelDeploymentStatus>,
}

impl CachedModel {
    pub fn of(md: &ModelDeployment) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_string(&BodyRef {
            spec: &md.spec,
            status: md.status.as_ref(),
        })?;
        Ok(Self {
            metadata: md.metadata.clone(),
            body: body.into_boxed_str(),
        })
    }

    /// The whole ModelDeployment, for one pass.
    pub fn decode(&self) -> Result<ModelDeployment, serde_json::Error> {
        let Body { spec, status } = serde_json::from_str(&self.body)?;
        let mut md = ModelDeployment::new("", spec);
        md.metadata = self.metadata.clone();
        md.status = status;
        Ok(md)
    }
}

/// The cache key of a decoded ModelDeployment.
pub fn model_ref(md: &ModelDeployment) -> ModelRef {
    let name = md.metadata.name.as_deref().unwrap_or_default();
    match md.metadata.namespace.as_deref() {
        Some(namespace) => ObjectRef::new(name).within(namespace),
        None => ObjectRef::new(name),
    }
}

/// A watch event with its ModelDeployment compacted; `None` (logged) in the
/// one case serializing fails, which a decoded object cannot reach.
pub fn compact(event: watcher::Event<ModelDeployment>) -> Option<watcher::Event<CachedModel>> {
    use watcher::Event as E;
    let of = |md: ModelDeployment| match CachedModel::of(&md) {
        Ok(cached) => Some(cached),
        Err(error) => {
            tracing::error!(name = ?md.metadata.name, %error, "cannot cache a ModelDeployment");
            None
        }
    };
    match event {
        E::Init => Some(E::Init),
        E::InitDone => Some(E::InitDone),
        E::InitApply(md) => of(md).map(E::InitApply),
        E::Apply(md) => of(md).map(E::Apply),
        E::Delete(md) => of(md).map(E::Delete),
    }
}

/// Read as the ModelDeployment it stands for (kube's `Controller` asks for
/// `Deserialize`; the cache itself is filled by `compact`).
impl<'de> Deserialize<'de> for CachedModel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let md = ModelDeployment::deserialize(d)?;
        Self::of(&md).map_err(serde::de::Error::custom)
    }
}

impl Resource for CachedModel {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        ModelDeployment::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        ModelDeployment::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        ModelDeployment::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        ModelDeployment::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        ModelDeployment::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example with comparison gates, and a status.
    fn rich() -> ModelDeployment {
        let example = include_str!("../../config/examples/comparison-gates.yaml");
        let mut md: ModelDeployment = serde_yaml::from_str(example).unwrap();
        md.metadata.namespace = Some("ns".into());
        md.metadata.uid = Some("u".into());
        md.metadata.resource_version = Some("42".into());
        md.status = Some(
            serde_json::from_value(json!({
                "phase": "Healthy", "observedGeneration": 3, "currentRevision": 2,
                "conditions": [{"type": "Ready", "status": "True", "reason": "RolloutComplete",
                                "message": "2/2", "lastTransitionTime": "2026-11-27T10:00:00Z",
                                "observedGeneration": 3}]
            }))
            .unwrap(),
        );
        md
    }

    #[test]
    fn decodes_to_the_object_it_was_made_of() {
        let md = rich();
        assert_eq!(CachedModel::of(&md).unwrap().decode().unwrap(), md);
        let mut without_status = rich();
        without_status.status = None;
        let cached = CachedModel::of(&without_status).unwrap();
        assert_eq!(cached.decode().unwrap(), without_status);
    }

    #[test]
    fn keyed_and_owned_like_the_object() {
        let md = rich();
        let cached = CachedModel::of(&md).unwrap();
        assert_eq!(ObjectRef::from_obj(&cached), model_ref(&md));
        assert_eq!(CachedModel::kind(&()), "ModelDeployment");
        assert_eq!(CachedModel::api_version(&()), "mlops.dev/v1alpha1");
        assert_eq!(CachedModel::plural(&()), "modeldeployments");
        let deserialized: CachedModel = serde_json::from_value(json!(md)).unwrap();
        assert_eq!(deserialized, cached);
    }
}
