//! The ModelDeployment controller: watches, caches and the reconcile loop.

mod apply;
mod conditions;
mod context;
mod drift;
mod error;
mod reconcile;
mod status;

pub use conditions::{DEGRADED, PROGRESSING, READY};
pub use context::{Context, Stores};
pub use error::Error;
pub use reconcile::reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::api::ModelDeployment;
use crate::resources::labels::{MANAGER, managed_selector};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// ModelDeployments reconciled at once.
    pub concurrency: u16,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(client: Client, settings: Settings) -> Result<(), Error> {
    let mds = Api::<ModelDeployment>::all(client.clone());
    // Fail fast with a clear error when the CRD is not installed.
    mds.list(&kube::api::ListParams::default().limit(1)).await?;

    let (deployments, deployment_events) = child_cache::<Deployment>(&client);
    let (services, service_events) = child_cache::<Service>(&client);
    let (hpas, hpa_events) = child_cache::<HorizontalPodAutoscaler>(&client);
    let ctx = Arc::new(Context {
        client: client.clone(),
        stores: Stores {
            deployments,
            services,
            hpas,
        },
        recorder: Recorder::new(
            client,
            Reporter {
                controller: MANAGER.into(),
                instance: None,
            },
        ),
    });
    let backoff = Arc::new(Backoff::default());

    Controller::new(mds, watcher::Config::default().any_semantic())
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        .owns_stream(hpa_events)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .shutdown_on_signal()
        .run(
            {
                let backoff = backoff.clone();
                move |md, ctx| {
                    let backoff = backoff.clone();
                    async move {
                        let result = reconcile(md.clone(), ctx).await;
                        if result.is_ok() {
                            backoff.reset(&ObjectRef::from_obj(md.as_ref()));
                        }
                        result
                    }
                }
            },
            move |md, error, _ctx| {
                let delay = backoff.next(&ObjectRef::from_obj(md.as_ref()));
                tracing::warn!(name = %md.meta().name.clone().unwrap_or_default(), error = %error, kind = error.kind(), retry_in = ?delay, "reconcile failed");
                Action::requeue(delay)
            },
            ctx,
        )
        .for_each(|_| std::future::ready(()))
        .await;
    Ok(())
}

/// A label-scoped watch of one child kind, cached without managedFields
/// (they are most of an object's size and the operator never reads them).
fn child_cache<K>(
    client: &Client,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let config = watcher::Config::default()
        .labels(&managed_selector())
        .any_semantic();
    let events = watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .touched_objects();
    (store, events)
}

/// Per-object exponential backoff for failed reconciles, so one broken object
/// neither hammers the API server nor waits a flat long time to recover.
#[derive(Default)]
struct Backoff {
    failures: Mutex<HashMap<ObjectRef<ModelDeployment>, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(300);

    fn next(&self, key: &ObjectRef<ModelDeployment>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        Self::BASE
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(20)))
            .min(Self::MAX)
    }

    fn reset(&self, key: &ObjectRef<ModelDeployment>) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_and_resets() {
        let b = Backoff::default();
        let key = ObjectRef::new("m").within("ns");
        let delays: Vec<_> = (0..12).map(|_| b.next(&key)).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[2], Duration::from_secs(2));
        assert_eq!(delays[11], Backoff::MAX);
        b.reset(&key);
        assert_eq!(b.next(&key), Duration::from_millis(500));
    }
}
