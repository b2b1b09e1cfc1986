//! What every reconcile shares: the client, the child caches and the event
//! recorder.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};

/// Caches of the operator's children (label-scoped watches), so a converged
/// ModelDeployment is checked without a single API request.
#[derive(Clone)]
pub struct Stores {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub hpas: Store<HorizontalPodAutoscaler>,
}

impl Stores {
    /// Reconciling before every cache has its first full list would mistake
    /// existing children for missing ones.
    pub async fn wait_until_ready(&self) {
        // A store's writer is only dropped at shutdown; then there is nothing
        // left to wait for.
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.hpas.wait_until_ready().await;
    }
}

/// Looks a child up by namespace and name.
pub fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub recorder: Recorder,
}
