//! The runtime: one controller per watched scope, its watches and caches,
//! the queue of ModelDeployments to reconcile, per-object backoff, and
//! startup. What one pass does is `crate::reconcile`.

mod decode;
mod initial_list;
mod pass;
mod queue;
mod state_entries;
mod watch_backoff;

pub use crate::error::Error;
pub use initial_list::InitialList;

use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller, trigger_owners};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::ModelDeployment;
use crate::cache::Stores;
use crate::cache::children::{Cached, CachedDeployment, CachedService};
use crate::cache::index::{IndexedWriter, indexed_store};
use crate::cache::model::{self as cached_model, CachedModel, ModelRef, model_ref};
use crate::cache::trim;
use crate::metrics::Metrics;
use crate::outbound::{Outbound, rounds};
use crate::reconcile::Context;
use crate::resources::labels::managed_selector;
use crate::rollout::pod::{self, WatchedPod};
use pass::{Backoff, error_policy, measured_reconcile};
use tokio::sync::watch;
use watch_backoff::{SharedPause, WatchBackoff};

/// How the controller runs.
#[derive(Clone)]
pub struct Settings {
    /// ModelDeployments reconciled at once (per watched namespace).
    pub concurrency: u16,
    /// Namespaces to watch; empty means the whole cluster.
    pub namespaces: Vec<String>,
    pub metrics: Arc<Metrics>,
    /// Set to true once every watched scope has its caches filled.
    pub ready: watch::Sender<bool>,
    /// How the caches are first filled.
    pub initial_list: InitialList,
    /// Which endpoints ModelDeployments may name, per purpose.
    pub egress: Arc<crate::outbound::policy::Policy>,
    /// How many metric rounds may run at once (off the reconcile workers).
    pub rounds: rounds::Limits,
    /// What the platform's admin set for every model pod.
    pub platform: crate::resources::Platform,
}

/// Runs the controller until SIGTERM or Ctrl-C: one controller for the whole
/// cluster, or one per watched namespace (each with its own caches, so the
/// operator needs no cluster-wide permissions in namespaced mode).
pub async fn run(client: Client, settings: Settings) -> Result<(), Error> {
    let scopes: Vec<Option<&str>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| Some(ns.as_str()))
            .collect()
    };
    let outbound = Arc::new(Outbound::new(
        client.clone(),
        settings.metrics.clone(),
        settings.egress.clone(),
        settings.rounds,
    )?);
    let watch_config = initial_list::base_config(&client, settings.initial_list).await;
    let pending = Arc::new(std::sync::atomic::AtomicUsize::new(scopes.len()));
    let runs = scopes.into_iter().map(|scope| {
        let on_ready = {
            let (pending, ready) = (pending.clone(), settings.ready.clone());
            move || {
                if pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                    let _ = ready.send(true);
                }
            }
        };
        let scope = Scope {
            namespace: scope,
            watch_config: watch_config.clone(),
        };
        run_scope(client.clone(), scope, &settings, outbound.clone(), on_ready)
    });
    futures::future::try_join_all(runs).await?;
    Ok(())
}

/// What one controller watches: a namespace or the whole cluster, and how
/// its caches start.
struct Scope<'a> {
    namespace: Option<&'a str>,
    watch_config: watcher::Config,
}

fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn run_scope(
    client: Client,
    scope: Scope<'_>,
    settings: &Settings,
    outbound: Arc<Outbound>,
    on_ready: impl FnOnce() + Send + 'static,
) -> Result<(), Error> {
    let concurrency = settings.concurrency;
    let namespace = scope.namespace;
    check_access(&client, namespace).await?;

    // Of an object that merely carries our labels, only its identity is
    // kept (`cache::trim`).
    let (deployments, deployment_events) =
        child_cache::<CachedDeployment>(&client, &scope, Cached::keep_deployment);
    let (services, service_events) =
        child_cache::<CachedService>(&client, &scope, Cached::keep_child);
    let (hpas, hpa_events) = child_cache(&client, &scope, trim::keep_hpa);
    let (pdbs, pdb_events) = child_cache(&client, &scope, trim::keep_pdb);
    // Revisions as metadata only: a snapshot is as large as a spec, and a
    // pass reads the few it needs (`reconcile::revisions::read_snapshots`).
    let (revisions, writer) = indexed_store::<PartialObjectMeta<ControllerRevision>>();
    let revision_events = indexed_child_cache(writer, &client, &scope, |r| {
        trim::identity_unless_child(&mut r.metadata);
    });
    // Pods are owned by ReplicaSets, not by the ModelDeployment: they are
    // mapped to it by their instance label. Only what rollout::health reads
    // is kept: at 1,000 pods the rest is most of the pod cache.
    let (pods, writer) = indexed_store::<WatchedPod>();
    let pod_events = indexed_child_cache(writer, &client, &scope, |p| {
        pod::keep_read_fields(p);
        trim::metadata(&mut p.metadata);
    });
    let stores = Stores::new(deployments, services, hpas, pdbs, revisions, pods);
    // Finished metric rounds wake their ModelDeployment's reconcile.
    let (wake, rounds_done) = rounds::Wake::channel();
    let ctx = Arc::new(Context {
        platform: settings.platform.clone(),
        ..Context::new(client, stores, settings.metrics.clone(), outbound, wake)
    });
    let backoff = Arc::new(Backoff::default());
    let stores = ctx.stores.clone();
    tokio::spawn(async move {
        stores.wait_until_ready().await;
        on_ready();
    });

    let (md_store, md_writer) = reflector::store::<CachedModel>();
    let md_store_for_cleanup = md_store.clone();
    let md_store_for_errors = md_store.clone();
    let queue = queue::Queue::new(concurrency);
    let reporter = Arc::new(decode::Reporter::new(
        ctx.client.clone(),
        ctx.reporter.clone(),
        settings.metrics.clone(),
        forget_on_delete(&ctx, &backoff, &queue),
    ));
    let deletions = reporter.clone();
    let md_events = md_watch(&ctx, &scope, reporter.clone())
        .reflect(md_writer)
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(cached) = event {
                deletions.deleted(cached);
            }
        });
    let attempts_ended = attempts_ended(&ctx.outbound.deliverer, namespace);
    let mut counters = entry_counters(&ctx, &md_store, &backoff, &reporter);
    let q = queue.clone();
    counters.push(("reconcile_queue", Box::new(move || q.entries())));
    let sampler = tokio::spawn(state_entries::sample(
        settings.metrics.clone(),
        namespace.unwrap_or("all").to_string(),
        counters,
    ));
    // Every trigger goes through the fair queue (`queue`); kube-runtime's
    // own trigger stream is left empty.
    let triggers = futures::stream::select_all([
        md_events
            .applied_objects()
            .map_ok(|md| ObjectRef::from_obj(&md))
            .boxed(),
        owners(deployment_events),
        owners(service_events),
        owners(hpa_events),
        owners(pdb_events),
        owners(revision_events),
        attempts_ended.map(Ok).boxed(),
        rounds_done.map(Ok).boxed(),
        // Only a failing or unschedulable pod wakes its ModelDeployment:
        // every other pod change reaches it as the Deployment's status, and
        // a pass reads every pod from the cache whatever woke it.
        failing(pod_events)
            .try_filter_map(|pod| std::future::ready(Ok(model_of_pod(pod))))
            .boxed(),
    ]);
    let requests = queue.clone().requests(triggers);
    Controller::for_stream(futures::stream::pending(), md_store)
        .trigger_backoff(SharedPause)
        .reconcile_on(requests)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(
            {
                let (backoff, store, queue) =
                    (backoff.clone(), md_store_for_cleanup, queue.clone());
                move |md, ctx| {
                    // A requeue's timer: queued here, run in its turn.
                    let pass = queue.admit(ObjectRef::from_obj(md.as_ref()));
                    let (backoff, store) = (backoff.clone(), store.clone());
                    async move {
                        let Some(_pass) = pass else {
                            return Ok(Action::await_change());
                        };
                        measured_reconcile(md, ctx, backoff, store).await
                    }
                }
            },
            move |md, error, _ctx| error_policy(md.as_ref(), error, &backoff, &md_store_for_errors),
            ctx,
        )
        .for_each(|result| {
            if let Err(kube::runtime::controller::Error::ObjectNotFound(object)) = &result {
                queue.forget(object.namespace.as_deref(), &object.name);
            }
            log_stream_error(result);
            std::future::ready(())
        })
        .await;
    sampler.abort();
    Ok(())
}

/// Fails fast with a clear error when the CRD is not installed or the
/// operator may not read ModelDeployments here. Metadata only: one object
/// this binary cannot decode must not stop the start (`decode`).
async fn check_access(client: &Client, namespace: Option<&str>) -> Result<(), Error> {
    scoped_api::<ModelDeployment>(client, namespace)
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await?;
    tracing::info!(
        namespace = namespace.unwrap_or("<all>"),
        "watching ModelDeployments"
    );
    Ok(())
}

/// What is kept per object goes with the object (issue 11: cleanup).
fn forget_on_delete(
    ctx: &Arc<Context>,
    backoff: &Arc<Backoff>,
    queue: &Arc<queue::Queue>,
) -> decode::OnDelete {
    let (ctx, backoff, queue) = (ctx.clone(), backoff.clone(), queue.clone());
    Box::new(move |md: &ModelDeployment| {
        pass::forget(&ctx, md);
        backoff.reset(&model_ref(md));
        queue.forget(md.metadata.namespace.as_deref(), &md.name_any());
    })
}

/// The ModelDeployment watch: decoded one by one (`decode`), trimmed to
/// what is read, followed for the count of those awaiting a first status,
/// and compacted for the cache (`cached_model`).
fn md_watch(
    ctx: &Arc<Context>,
    scope: &Scope<'_>,
    reporter: Arc<decode::Reporter>,
) -> impl Stream<Item = Result<watcher::Event<CachedModel>, watcher::Error>> + Send + 'static {
    let watch = decode::watch(
        &ctx.client,
        scope.namespace,
        scope.watch_config.clone(),
        reporter,
    );
    let ctx = ctx.clone();
    watch
        .backoff(WatchBackoff::default())
        .modify(keep_read_fields)
        .inspect_ok(move |event| ctx.status_writes.follow(event))
        .try_filter_map(|event| std::future::ready(Ok(cached_model::compact(event))))
}

/// A child's changes trigger its owner ModelDeployment.
fn owners<K>(
    events: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> futures::stream::BoxStream<'static, Result<ModelRef, watcher::Error>>
where
    K: Child,
{
    trigger_owners::<CachedModel, _>(events, (), ())
        .map_ok(|request| request.obj_ref)
        .boxed()
}

/// Pods are mapped to their ModelDeployment by its instance label.
fn model_of_pod(pod: WatchedPod) -> Option<ModelRef> {
    let namespace = pod.metadata.namespace?;
    let instance = pod
        .metadata
        .labels?
        .remove(crate::resources::labels::INSTANCE)?;
    Some(ObjectRef::new(&instance).within(&namespace))
}

fn failing(
    pods: impl Stream<Item = Result<WatchedPod, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<WatchedPod, watcher::Error>> + Send + 'static {
    pods.try_filter(|pod| {
        std::future::ready(crate::rollout::health::is_failing(pod) || pod.unschedulable().is_some())
    })
}

/// Every cache of this scope and every per-object map, for
/// `model_operator_state_entries`.
fn entry_counters(
    ctx: &Arc<Context>,
    mds: &Store<CachedModel>,
    backoff: &Arc<Backoff>,
    reporter: &Arc<decode::Reporter>,
) -> Vec<state_entries::Counter> {
    let stores = ctx.stores.clone();
    let mut counters: Vec<state_entries::Counter> = Vec::new();
    let mds = mds.clone();
    counters.push((
        "cached_modeldeployments",
        Box::new(move || mds.state().len()),
    ));
    let s = stores.clone();
    counters.push((
        "cached_deployments",
        Box::new(move || s.deployments.state().len()),
    ));
    let s = stores.clone();
    counters.push((
        "cached_services",
        Box::new(move || s.services.state().len()),
    ));
    let s = stores.clone();
    counters.push(("cached_hpas", Box::new(move || s.hpas.state().len())));
    let s = stores.clone();
    counters.push(("cached_pdbs", Box::new(move || s.pdbs.state().len())));
    let s = stores.clone();
    counters.push((
        "cached_controllerrevisions",
        Box::new(move || s.revisions.store.state().len()),
    ));
    let s = stores;
    counters.push(("cached_pods", Box::new(move || s.pods.store.state().len())));
    let c = ctx.clone();
    counters.push((
        "status_write_times",
        Box::new(move || c.status_writes.entries()),
    ));
    let c = ctx.clone();
    counters.push((
        "awaiting_first_status",
        Box::new(move || c.status_writes.awaiting_first()),
    ));
    let c = ctx.clone();
    counters.push((
        "alert_delivery",
        Box::new(move || c.outbound.deliverer.entries()),
    ));
    for (n, kind) in ["guard_rounds", "bearer_tokens", "analysis_rounds"]
        .into_iter()
        .enumerate()
    {
        let c = ctx.clone();
        counters.push((kind, Box::new(move || c.outbound.entries()[n].1)));
    }
    let b = backoff.clone();
    counters.push(("reconcile_backoff", Box::new(move || b.entries())));
    let c = ctx.clone();
    counters.push((
        "revision_snapshots",
        Box::new(move || c.snapshots.entries()),
    ));
    let r = reporter.clone();
    counters.push(("undecodable_reported", Box::new(move || r.entries())));
    counters
}

/// What the ModelDeployment cache keeps: not the managed fields, nor the
/// copy of the whole spec that a client-side `kubectl apply` leaves in an
/// annotation (the operator never reads either).
fn keep_read_fields(md: &mut ModelDeployment) {
    trim::metadata(md.meta_mut());
}

/// The ModelDeployments of this scope whose alert delivery attempt ended:
/// reconciled at once, so a confirmation reaches status in one pass (and a
/// failure's backoff is scheduled).
fn attempts_ended(
    deliverer: &crate::outbound::deliver::Deliverer,
    namespace: Option<&str>,
) -> impl Stream<Item = ModelRef> + Send + 'static {
    use tokio::sync::broadcast::error::RecvError;
    let scope = namespace.map(str::to_string);
    futures::stream::unfold(deliverer.attempts_ended(), |mut ended| async move {
        loop {
            match ended.recv().await {
                Ok(object) => return Some((object, ended)),
                // Missed ends are found by the pass `deliver` scheduled.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(move |(ns, name)| {
        let ours = scope.as_ref().is_none_or(|s| *s == ns);
        std::future::ready(ours.then(|| ObjectRef::new(&name).within(&ns)))
    })
}

/// Reconcile errors are logged by the error policy; what arrives here are
/// watch and queue errors, which would otherwise vanish.
fn log_stream_error<T>(result: Result<T, kube::runtime::controller::Error<Error, watcher::Error>>) {
    match result {
        Ok(_) | Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
        Err(other) => tracing::warn!(error = %other, "controller stream error"),
    }
}

/// What a watched child kind must be.
trait Child:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Child for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A label-scoped watch of one child kind, cached without managedFields
/// (they are most of an object's size and the operator never reads them)
/// and trimmed by `trim`.
fn child_cache<K>(
    client: &Client,
    scope: &Scope<'_>,
    trim: fn(&mut K),
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Child,
{
    let (store, writer) = reflector::store();
    let events = child_watch(client, scope, trim)
        .reflect(writer)
        .touched_objects();
    (store, events)
}

/// Like `child_cache`, into a store indexed by instance; `trim` drops what
/// the operator never reads before the object is cached.
fn indexed_child_cache<K>(
    mut writer: IndexedWriter<K>,
    client: &Client,
    scope: &Scope<'_>,
    trim: fn(&mut K),
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Child,
{
    child_watch(client, scope, trim)
        .inspect_ok(move |event| writer.apply_watcher_event(event))
        .touched_objects()
}

fn child_watch<K>(
    client: &Client,
    scope: &Scope<'_>,
    trim: fn(&mut K),
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Child,
{
    let config = scope.watch_config.clone().labels(&managed_selector());
    watcher(scoped_api::<K>(client, scope.namespace), config)
        .backoff(WatchBackoff::default())
        .modify(move |o: &mut K| {
            o.meta_mut().managed_fields = None;
            trim(o);
        })
}
