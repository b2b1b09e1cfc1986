//! What every reconcile shares: the client, the child caches and the event
//! recorder.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use tokio::sync::watch;

use super::compact_cache::{CachedDeployment, CachedService};
use super::index::Indexed;
use crate::resources::labels::MANAGER;
use crate::rollout::pod::WatchedPod;

/// Caches of the operator's children (label-scoped watches), so a converged
/// ModelDeployment is checked without a single API request.
#[derive(Clone)]
pub struct Stores {
    pub deployments: Store<CachedDeployment>,
    pub services: Store<CachedService>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    /// Indexed by instance: every reconcile looks its revisions and pods up.
    pub revisions: Indexed<ControllerRevision>,
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
        revisions: Indexed<ControllerRevision>,
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
            let _ = tx.send(true);
        });
        Self {
            deployments,
            services,
            hpas,
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

/// What every reconcile of one watched scope shares.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    /// Who sends the Events. Each Event is sent through a recorder of its
    /// own: kube's recorder keeps every event it sent for six minutes to
    /// fold repeats into a series, which at 1,000 new models held 9 MiB
    /// (and kept it until the next event). Our events are transitions, so
    /// repeats are rare and a repeat is simply a new Event.
    pub reporter: Reporter,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Prometheus and the alert channels.
    pub outbound: Arc<super::analysis::Outbound>,
    /// When each ModelDeployment's status was last written, so progress
    /// is written at most once per window.
    pub status_writes: super::persist::WriteTimes,
    /// Wakes a ModelDeployment of this scope once its metric round is done.
    pub wake: super::rounds::Wake,
}

impl Context {
    pub fn new(
        client: Client,
        stores: Stores,
        metrics: Arc<crate::metrics::Metrics>,
        outbound: Arc<super::analysis::Outbound>,
        wake: super::rounds::Wake,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: None,
        };
        Self {
            reporter,
            client,
            stores,
            metrics,
            outbound,
            status_writes: Default::default(),
            wake,
        }
    }
}
