//! Children as the cache keeps them. k8s-openapi's `Deployment` with its
//! one container is about 12 KB in memory, a `Service` about 4 KB: their
//! specs are trees of large inline structs. The same specs as compact JSON
//! are about 2 KB and a few hundred bytes. The cache keeps metadata and
//! status decoded (every watch event is matched by its owner, and status
//! changes are what wakes a reconcile) and the spec as the JSON the API
//! server sent, decoded for the few children a reconcile looks at.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{Service, ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A kind whose spec the cache keeps as JSON.
pub trait Compactable: k8s_openapi::Resource + Clone + Debug + PartialEq + Sized {
    type Spec: Serialize + DeserializeOwned;
    type Status: Clone + Debug + PartialEq + Serialize + DeserializeOwned;

    fn split(&self) -> (&ObjectMeta, Option<&Self::Spec>, Option<&Self::Status>);
    fn join(metadata: ObjectMeta, spec: Option<Self::Spec>, status: Option<Self::Status>) -> Self;
}

impl Compactable for Deployment {
    type Spec = DeploymentSpec;
    type Status = DeploymentStatus;

    fn split(
        &self,
    ) -> (
        &ObjectMeta,
        Option<&DeploymentSpec>,
        Option<&DeploymentStatus>,
    ) {
        (&self.metadata, self.spec.as_ref(), self.status.as_ref())
    }

    fn join(
        metadata: ObjectMeta,
        spec: Option<DeploymentSpec>,
        status: Option<DeploymentStatus>,
    ) -> Self {
        Self {
            metadata,
            spec,
            status,
        }
    }
}

impl Compactable for Service {
    type Spec = ServiceSpec;
    type Status = ServiceStatus;

    fn split(&self) -> (&ObjectMeta, Option<&ServiceSpec>, Option<&ServiceStatus>) {
        (&self.metadata, self.spec.as_ref(), self.status.as_ref())
    }

    fn join(
        metadata: ObjectMeta,
        spec: Option<ServiceSpec>,
        status: Option<ServiceStatus>,
    ) -> Self {
        Self {
            metadata,
            spec,
            status,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(bound = "K: Compactable")]
pub struct Cached<K: Compactable> {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec, as compact JSON.
    #[serde(
        default,
        deserialize_with = "spec_as_json",
        serialize_with = "json_as_spec",
        skip_serializing_if = "Option::is_none"
    )]
    spec: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<K::Status>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

pub type CachedDeployment = Cached<Deployment>;
pub type CachedService = Cached<Service>;

impl<K: Compactable> Cached<K> {
    /// The cache's trim: of an object no ModelDeployment controls, only
    /// its identity (`trim::identity_unless_child`).
    pub fn keep_child(&mut self) {
        if !super::trim::identity_unless_child(&mut self.metadata) {
            self.spec = None;
            self.status = None;
        }
    }

    /// The whole object, spec decoded.
    pub fn decode(&self) -> Result<K, serde_json::Error> {
        let spec = self.spec.as_deref().map(serde_json::from_str).transpose()?;
        Ok(K::join(self.metadata.clone(), spec, self.status.clone()))
    }

    pub fn of(object: &K) -> Result<Self, serde_json::Error> {
        let (metadata, spec, status) = object.split();
        Ok(Self {
            metadata: metadata.clone(),
            spec: spec
                .map(serde_json::to_string)
                .transpose()?
                .map(String::into_boxed_str),
            status: status.cloned(),
            kind: PhantomData,
        })
    }
}

/// Bytes of a Deployment condition's message kept. The Deployment
/// controller copies the API server's answer to a refused pod into
/// ReplicaFailure, and a webhook's answer can be long; what is read of it
/// (`rollout::refused`) is at its start.
const CONDITION_MESSAGE_KEPT: usize = 2048;

impl Cached<Deployment> {
    /// `keep_child`, and condition messages cut to
    /// `CONDITION_MESSAGE_KEPT`.
    pub fn keep_deployment(&mut self) {
        self.keep_child();
        let conditions = self.status.as_mut().and_then(|s| s.conditions.as_mut());
        for c in conditions.into_iter().flatten() {
            if let Some(message) = c.message.as_mut() {
                crate::rollout::foreign::cut(message, CONDITION_MESSAGE_KEPT);
            }
        }
    }
}

impl<K: Compactable> Default for Cached<K> {
    fn default() -> Self {
        Self {
            metadata: ObjectMeta::default(),
            spec: None,
            status: None,
            kind: PhantomData,
        }
    }
}

/// The cached child decoded, for one reconcile.
pub fn decoded<K: Compactable>(cached: Option<Arc<Cached<K>>>) -> Result<Option<Arc<K>>, Error> {
    cached
        .map(|c| c.decode().map(Arc::new))
        .transpose()
        .map_err(|source| Error::Decode {
            kind: K::KIND,
            source,
        })
}

fn spec_as_json<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<str>>, D::Error> {
    let spec = Option::<serde_json::Value>::deserialize(d)?;
    Ok(spec.map(|v| v.to_string().into_boxed_str()))
}

fn json_as_spec<S: Serializer>(spec: &Option<Box<str>>, s: S) -> Result<S::Ok, S::Error> {
    let value = spec
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(serde::ser::Error::custom)?;
    value.serialize(s)
}

impl<K: Compactable> k8s_openapi::Resource for Cached<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = K::Scope;
}

impl<K: Compactable> k8s_openapi::Metadata for Cached<K> {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "m", "namespace": "ns", "generation": 3, "labels": {"a": "b"},
                         "annotations": {"mlops.dev/applied-hash": "h"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b", "mlops.dev/revision": "4"}},
                    "spec": {"containers": [{"name": "model-server", "image": "srv:1",
                        "env": [{"name": "MODEL_VERSION", "value": "1.0"}],
                        "resources": {"limits": {"cpu": "1"}},
                        "terminationMessagePath": "/dev/termination-log"}],
                        "dnsPolicy": "ClusterFirst"}
                },
                "progressDeadlineSeconds": 600
            },
            "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 2,
                       "conditions": [{"type": "Available", "status": "True"}]}
        })
    }

    fn live_service() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "m", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {"selector": {"a": "b"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
                     "clusterIP": "10.96.0.7", "type": "ClusterIP", "sessionAffinity": "None"},
            "status": {"loadBalancer": {}}
        })
    }

    #[test]
    fn a_deployments_condition_messages_are_bounded() {
        let mut d = live();
        d["metadata"]["ownerReferences"] = json!([{"apiVersion": "mlops.dev/v1alpha1",
            "kind": "ModelDeployment", "name": "m", "uid": "u", "controller": true}]);
        d["status"]["conditions"] = json!([{"type": "ReplicaFailure", "status": "True",
            "reason": "FailedCreate", "message": "é".repeat(100_000)}]);
        let mut cached: CachedDeployment = serde_json::from_value(d).unwrap();
        cached.keep_deployment();
        let status = cached.status.unwrap();
        let message = status.conditions.unwrap()[0].message.clone().unwrap();
        assert!(message.len() <= CONDITION_MESSAGE_KEPT && message.len() > 2000);
        assert_eq!(status.ready_replicas, Some(2), "the rest is kept");
    }

    #[test]
    fn decodes_to_what_the_api_server_sent() {
        let cached: CachedDeployment = serde_json::from_value(live()).unwrap();
        let full: Deployment = serde_json::from_value(live()).unwrap();
        assert_eq!(cached.decode().unwrap(), full);
        assert_eq!(CachedDeployment::of(&full).unwrap().decode().unwrap(), full);
        let cached: CachedService = serde_json::from_value(live_service()).unwrap();
        let full: Service = serde_json::from_value(live_service()).unwrap();
        assert_eq!(cached.decode().unwrap(), full);
        assert_eq!(CachedService::of(&full).unwrap().decode().unwrap(), full);
    }

    #[test]
    fn serializes_like_the_object() {
        let cached: CachedDeployment = serde_json::from_value(live()).unwrap();
        let full: Deployment = serde_json::from_value(live()).unwrap();
        let mut want = serde_json::to_value(&full).unwrap();
        // The cached type carries no apiVersion and kind (kube's Resource
        // supplies them).
        let object = want.as_object_mut().unwrap();
        object.remove("apiVersion");
        object.remove("kind");
        assert_eq!(serde_json::to_value(&cached).unwrap(), want);
    }

    #[test]
    fn an_object_without_spec_or_status_decodes() {
        let cached: CachedDeployment =
            serde_json::from_value(json!({"metadata": {"name": "m"}})).unwrap();
        assert_eq!(cached.decode().unwrap().spec, None);
    }

    #[test]
    fn the_kind_is_the_objects() {
        use kube::Resource;
        assert_eq!(CachedDeployment::kind(&()), "Deployment");
        assert_eq!(CachedDeployment::api_version(&()), "apps/v1");
        assert_eq!(CachedService::kind(&()), "Service");
        assert_eq!(CachedService::plural(&()), "services");
    }
}
