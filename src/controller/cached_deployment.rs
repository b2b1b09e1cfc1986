//! A Deployment as the cache keeps it. k8s-openapi's `Deployment` with its
//! one container is about 12 KB in memory (its pod template is a tree of
//! large inline structs); the same spec as compact JSON is about 2 KB. The
//! cache keeps metadata and status decoded (every watch event is matched by
//! its owner, and status changes are what wakes a reconcile) and the spec as
//! the JSON the API server sent, decoded for the one or two Deployments a
//! reconcile looks at.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct CachedDeployment {
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
    pub status: Option<DeploymentStatus>,
}

impl CachedDeployment {
    /// The whole Deployment, spec decoded.
    pub fn decode(&self) -> Result<Deployment, serde_json::Error> {
        Ok(Deployment {
            metadata: self.metadata.clone(),
            spec: self
                .spec
                .as_deref()
                .map(serde_json::from_str::<DeploymentSpec>)
                .transpose()?,
            status: self.status.clone(),
        })
    }

    pub fn of(deployment: &Deployment) -> Result<Self, serde_json::Error> {
        Ok(Self {
            metadata: deployment.metadata.clone(),
            spec: deployment
                .spec
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?
                .map(String::into_boxed_str),
            status: deployment.status.clone(),
        })
    }
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

crate::resources::slim::slim_resource!(
    CachedDeployment,
    "apps/v1",
    "apps",
    "Deployment",
    "v1",
    "deployments"
);

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

    #[test]
    fn decodes_to_what_the_api_server_sent() {
        let cached: CachedDeployment = serde_json::from_value(live()).unwrap();
        let full: Deployment = serde_json::from_value(live()).unwrap();
        assert_eq!(cached.decode().unwrap(), full);
        assert_eq!(CachedDeployment::of(&full).unwrap().decode().unwrap(), full);
    }

    #[test]
    fn serializes_like_the_deployment() {
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
    fn a_deployment_without_spec_or_status_decodes() {
        let cached: CachedDeployment =
            serde_json::from_value(json!({"metadata": {"name": "m"}})).unwrap();
        assert_eq!(cached.decode().unwrap().spec, None);
    }
}
