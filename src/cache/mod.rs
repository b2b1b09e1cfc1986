//! What the operator's caches hold and how a reconcile looks into them:
//! children kept compact (`children`), the ModelDeployment as JSON
//! (`model`), and stores indexed by instance (`index`). Filled by the
//! watches in `controller`; read, never written, by `reconcile`.

pub mod children;
pub mod index;
pub mod model;
pub mod snapshots;
pub mod trim;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::watch;

use crate::rollout::pod::WatchedPod;
use children::{CachedDeployment, CachedService};
use index::Indexed;

/// Caches of the operator's children (label-scoped watches), so a converged
/// ModelDeployment is checked without a single API request.
#[derive(Clone)]
pub struct Stores {
    pub deployments: Store<CachedDeployment>,
    pub services: Store<CachedService>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    pub pdbs: Store<PodDisruptionBudget>,
    /// Indexed by instance: every reconcile looks its revisions and pods up.
    /// Revisions as metadata only: their snapshots are read when needed
    /// (`snapshots`).
    pub revisions: Indexed<PartialObjectMeta<ControllerRevision>>,
    pub pods: Indexed<WatchedPod>,
    ready: watch::Receiver<bool>,
}

impl Stores {
    /// Must be called inside a Tokio runtime: one task waits for the caches'
    /// first full list.
    pub fn new(
        deployments: Store<CachedDeployment>,
        services: Store<CachedService>,
        hpas: Store<HorizontalPodAutoscaler>,
        pdbs: Store<PodDisruptionBudget>,
        revisions: Indexed<PartialObjectMeta<ControllerRevision>>,
        pods: Indexed<WatchedPod>,
    ) -> Self {
        // `Store::wait_until_ready` wakes only the most recent of several
        // concurrent waiters (kube-runtime 5.0 keeps one waker per store), so
        // concurrent reconciles waiting on it can hang for good. One task
        // waits on the stores; everyone else waits on a watch channel, which
        // wakes every waiter.
        let (tx, ready) = watch::channel(false);
        let stores = (
            deployments.clone(),
            services.clone(),
            hpas.clone(),
            pdbs.clone(),
            revisions.store.clone(),
            pods.store.clone(),
        );
        tokio::spawn(async move {
            // A store's writer is only dropped at shutdown; then there is
            // nothing left to wait for.
            let _ = stores.0.wait_until_ready().await;
            let _ = stores.1.wait_until_ready().await;
            let _ = stores.2.wait_until_ready().await;
            let _ = stores.3.wait_until_ready().await;
            let _ = stores.4.wait_until_ready().await;
            let _ = stores.5.wait_until_ready().await;
            let _ = tx.send(true);
        });
        Self {
            deployments,
            services,
            hpas,
            pdbs,
            revisions,
            pods,
            ready,
        }
    }

    /// Reconciling before every cache has its first full list would mistake
    /// existing children for missing ones.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        // Err only when the waiting task is gone, i.e. at shutdown.
        let _ = ready.wait_for(|r| *r).await;
    }
}

/// Objects of one ModelDeployment (by the instance label) in a namespace:
/// an index lookup, not a scan of the cache.
pub fn of_instance<K>(indexed: &Indexed<K>, namespace: &str, instance: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    indexed.of_instance(namespace, instance)
}

/// Looks a child up by namespace and name.
pub fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}
