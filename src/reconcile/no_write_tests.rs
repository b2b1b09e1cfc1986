//! A converged ModelDeployment costs no API request at all: reconcile runs
//! against a mock API server that would block on any request.

use crate::resources::Platform;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use kube::core::{PartialObjectMeta, PartialObjectMetaExt};

use crate::cache::children::{Cached, CachedDeployment, CachedService, Compactable};
use crate::rollout::pod::WatchedPod;
use http::Method;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::context::Context;
use super::reconcile;
use crate::api::{
    AlertChannel, AlertNotification, AlertState, FiringAlert, HistoryEntry, ModelDeployment,
    ModelDeploymentStatus, Outcome, ServedVersion,
};
use crate::cache::Stores;
use crate::fixtures::api_calls::{ApiServer, mock_api};
use crate::reconcile::act::apply::stamp;
use crate::resources;
use crate::rollout::revision;
use crate::status::{Observed, Revisions, derive};

/// What the API server would hold after applying `desired`: the same object
/// plus server-side fields.
fn as_stored<K: Serialize + DeserializeOwned>(desired: K, status: serde_json::Value) -> K {
    let mut v = serde_json::to_value(desired).unwrap();
    v["metadata"]["uid"] = json!("child-uid");
    v["metadata"]["resourceVersion"] = json!("42");
    v["metadata"]["generation"] = json!(3);
    v["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    v["status"] = status;
    serde_json::from_value(v).unwrap()
}

/// The events of a watch's first list of `objects`.
fn listed<K>(objects: Vec<K>) -> Vec<watcher::Event<K>> {
    std::iter::once(watcher::Event::Init)
        .chain(objects.into_iter().map(watcher::Event::InitApply))
        .chain(std::iter::once(watcher::Event::InitDone))
        .collect()
}

/// A cache of children as the operator keeps them.
fn cached_of<K: Compactable>(objects: Vec<K>) -> Store<Cached<K>> {
    store_of(objects.iter().map(|o| Cached::of(o).unwrap()).collect())
}

fn store_of<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    listed(objects)
        .iter()
        .for_each(|e| writer.apply_watcher_event(e));
    store
}

fn indexed_of<K>(objects: Vec<K>) -> crate::cache::index::Indexed<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (indexed, mut writer) = crate::cache::index::indexed_store();
    listed(objects)
        .iter()
        .for_each(|e| writer.apply_watcher_event(e));
    indexed
}

/// A revision as the cache keeps it: metadata only.
fn metadata_of(cr: ControllerRevision) -> PartialObjectMeta<ControllerRevision> {
    cr.metadata.into_response_partial()
}

fn converged_world(autoscaling: bool) -> (ModelDeployment, Stores) {
    match autoscaling {
        true => converged_with(json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 4}})),
        false => converged_with(json!({})),
    }
}

/// Everything converged for the base spec with `extra` fields.
fn converged_with(extra: serde_json::Value) -> (ModelDeployment, Stores) {
    let mut spec =
        json!({"model": {"version": "2.1.0"}, "server": {"image": "srv:1"}, "replicas": 2});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml", "uid": "md-uid", "generation": 5, "resourceVersion": "7"},
        "spec": spec,
    }))
    .unwrap();
    let served = ServedVersion::requested(&md);

    let (deployment, _) = stamp(
        "Deployment",
        resources::deployment(&md, &served, 1, &Platform::default()),
    )
    .unwrap();
    let deployment: Deployment = as_stored(
        deployment,
        json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
    );
    let (service, _) = stamp("Service", resources::service(&md, "fraud")).unwrap();
    let service: Service = as_stored(service, json!({}));
    let hpas: Vec<HorizontalPodAutoscaler> = resources::hpa(&md, "fraud")
        .map(|h| {
            as_stored(
                stamp("HorizontalPodAutoscaler", h).unwrap().0,
                json!({"desiredReplicas": 2, "currentReplicas": 2}),
            )
        })
        .into_iter()
        .collect();
    let pdbs: Vec<PodDisruptionBudget> = resources::pdb(&md, "fraud")
        .map(|p| {
            let status = json!({"currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1, "expectedPods": 2});
            as_stored(stamp("PodDisruptionBudget", p).unwrap().0, status)
        })
        .into_iter()
        .collect();

    let mut snapshot = revision::build(&md, 1, &served);
    snapshot.metadata.resource_version = Some("3".into());
    md.status = Some(converged_status(&md, &deployment));
    let stores = Stores::new(
        cached_of(vec![deployment]),
        cached_of(vec![service]),
        store_of(hpas),
        store_of(pdbs),
        indexed_of(vec![metadata_of(snapshot)]),
        indexed_of(Vec::<WatchedPod>::new()),
    );
    (md, stores)
}

/// What the operator wrote once revision 1 became stable on `deployment`.
fn converged_status(md: &ModelDeployment, deployment: &Deployment) -> ModelDeploymentStatus {
    let served = ServedVersion::requested(md);
    let at = Time(Timestamp::from_second(1_800_000_000).unwrap());
    let revisions = Revisions {
        requested: Some(1),
        current: Some(1),
        stable: Some(1),
        history: vec![HistoryEntry {
            revision: 1,
            model_version: served.model.version.clone(),
            image: served.server.image.clone(),
            created_at: Some(at.clone()),
            finished_at: Some(at.clone()),
            outcome: Outcome::Stable,
            reason: "RolloutComplete".into(),
            message: "every pod ran it and was available".into(),
            promoted_at: Some(at.clone()),
            analysis: Vec::new(),
            retry_token: None,
        }],
        analysis: None,
        alerts: Vec::new(),
        alert_outbox: Vec::new(),
        canary: None,
        unschedulable: None,
    };
    let observed = Observed {
        md,
        served: &served,
        deployment: Some(deployment),
        invalid: None,
        revisions: &revisions,
        template_pending: false,
    };
    derive(&observed, &at)
}

/// A context whose client talks to a mock API server the test controls.
fn mock_context(stores: Stores) -> (Arc<Context>, ApiServer) {
    let (client, api) = mock_api();
    let reporter = Reporter {
        controller: "test".into(),
        instance: None,
    };
    let outbound = Arc::new(
        crate::outbound::Outbound::new(
            client.clone(),
            Arc::default(),
            Arc::new(crate::outbound::policy::Policy::any()),
            Default::default(),
        )
        .unwrap(),
    );
    (
        Arc::new(Context {
            client,
            stores,
            reporter,
            metrics: Arc::default(),
            outbound,
            status_writes: Default::default(),
            wake: crate::outbound::rounds::Wake::channel().0,
            snapshots: Default::default(),
            platform: Default::default(),
        }),
        api,
    )
}

async fn reconcile_against_silent_api(md: ModelDeployment, stores: Stores) {
    let (ctx, mut api) = mock_context(stores);

    // Any request would wait forever for the mock's answer: finishing at all
    // means none was sent. The mock double-checks.
    let result = tokio::time::timeout(Duration::from_secs(5), reconcile(Arc::new(md), ctx)).await;
    assert!(result.is_ok(), "reconcile sent a request to the API server");
    assert!(result.unwrap().is_ok());
    api.expect_none(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn converged_fixed_replicas_makes_no_request() {
    let (md, stores) = converged_world(false);
    reconcile_against_silent_api(md, stores).await;
}

#[tokio::test]
async fn converged_with_a_disruption_budget_makes_no_request() {
    let (md, stores) = converged_with(json!({"disruptionBudget": {"minAvailable": "50%"}}));
    assert_eq!(stores.pdbs.state().len(), 1);
    reconcile_against_silent_api(md, stores).await;
}

#[tokio::test]
async fn converged_autoscaled_makes_no_request_even_when_the_hpa_scaled() {
    let (md, stores) = converged_world(true);
    // The HPA moved the Deployment to 4 replicas; that is not drift.
    let mut d = stores.deployments.state()[0].decode().unwrap();
    d.spec.as_mut().unwrap().replicas = Some(4);
    let mut md = md;
    // The status the operator wrote after the HPA scaled.
    md.status = Some(converged_status(&md, &d));
    let stores = Stores::new(
        cached_of(vec![d]),
        stores.services.clone(),
        stores.hpas.clone(),
        stores.pdbs.clone(),
        stores.revisions.clone(),
        stores.pods.clone(),
    );
    reconcile_against_silent_api(md, stores).await;
}

/// A canary held at a pause without duration: revision 1 Stable on the
/// stable Deployment, revision 2 on one canary pod, waiting for promotion.
/// Also the full snapshots, as the API server would send them.
fn held_canary_world() -> (ModelDeployment, Stores, Vec<ControllerRevision>) {
    let spec = json!({
        "model": {"version": "2.0"}, "server": {"image": "srv:1"}, "replicas": 4,
        "rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}},
    });
    let mut md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml", "uid": "md-uid", "generation": 5, "resourceVersion": "7"},
        "spec": spec,
    }))
    .unwrap();
    let new = ServedVersion::requested(&md);
    let mut old_md = md.clone();
    old_md.spec.model.version = "1.0".into();
    let old = ServedVersion::requested(&old_md);
    let settled = |replicas: i32| json!({"observedGeneration": 3, "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas});
    let stable: Deployment = as_stored(
        stamp(
            "Deployment",
            resources::deployment(&md, &old, 1, &Platform::default()),
        )
        .unwrap()
        .0,
        settled(4),
    );
    let canary: Deployment = as_stored(
        stamp(
            "Deployment",
            resources::canary_deployment(&md, &new, 2, 1, &Platform::default()),
        )
        .unwrap()
        .0,
        settled(1),
    );
    let service: Service = as_stored(
        stamp("Service", resources::service(&md, "fraud"))
            .unwrap()
            .0,
        json!({}),
    );
    let mut snapshots = vec![revision::build(&md, 1, &old), revision::build(&md, 2, &new)];
    for s in &mut snapshots {
        s.metadata.resource_version = Some("3".into());
    }
    let at = Time(Timestamp::from_second(1_800_000_000).unwrap());
    let entry = |revision: i64, served: &ServedVersion, outcome: Outcome| HistoryEntry {
        revision,
        model_version: served.model.version.clone(),
        image: served.server.image.clone(),
        created_at: Some(at.clone()),
        outcome,
        ..HistoryEntry::default()
    };
    let revisions = Revisions {
        requested: Some(2),
        current: Some(2),
        stable: Some(1),
        history: vec![
            HistoryEntry {
                finished_at: Some(at.clone()),
                promoted_at: Some(at.clone()),
                reason: "RolloutComplete".into(),
                ..entry(1, &old, Outcome::Stable)
            },
            entry(2, &new, Outcome::Progressing),
        ],
        analysis: None,
        alerts: Vec::new(),
        alert_outbox: Vec::new(),
        canary: Some(crate::rollout::canary::status_at(
            &[
                crate::rollout::canary::Step::SetWeight(25),
                crate::rollout::canary::Step::Pause(None),
            ],
            2,
            1,
            at.clone(),
            at.clone(),
        )),
        unschedulable: None,
    };
    let observed = Observed {
        md: &md,
        served: &new,
        deployment: Some(&stable),
        invalid: None,
        revisions: &revisions,
        template_pending: false,
    };
    md.status = Some(derive(&observed, &at));
    let stores = Stores::new(
        cached_of(vec![stable, canary]),
        cached_of(vec![service]),
        store_of(Vec::<HorizontalPodAutoscaler>::new()),
        store_of(Vec::<PodDisruptionBudget>::new()),
        indexed_of(snapshots.iter().cloned().map(metadata_of).collect()),
        indexed_of(Vec::<WatchedPod>::new()),
    );
    (md, stores, snapshots)
}

/// The cache keeps revisions as metadata: the first pass reads the stable
/// revision's snapshot (the canary compares with it), once; from then on a
/// held canary costs nothing.
#[tokio::test]
async fn a_canary_held_at_a_pause_reads_the_stable_snapshot_once_then_makes_no_request() {
    let (md, stores, snapshots) = held_canary_world();
    assert_eq!(
        md.status.as_ref().and_then(|s| s.phase),
        Some(crate::api::Phase::Progressing)
    );
    let (ctx, mut api) = mock_context(stores);
    let md = Arc::new(md);
    let first = tokio::spawn(reconcile(md.clone(), ctx.clone()));
    api.expect(Method::GET, "/namespaces/ml/controllerrevisions/fraud-r1")
        .await
        .respond(200, &serde_json::to_value(&snapshots[0]).unwrap());
    let result = tokio::time::timeout(Duration::from_secs(5), first).await;
    assert!(
        result.is_ok_and(|r| r.unwrap().is_ok()),
        "the first pass ends"
    );
    api.expect_none(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let pass = tokio::time::timeout(Duration::from_secs(5), reconcile(md.clone(), ctx.clone()));
        assert!(
            pass.await.is_ok_and(|r| r.is_ok()),
            "a later pass sent a request"
        );
        api.expect_none(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stale_status_is_the_only_write() {
    // Control for the tests above: the harness does see requests.
    let (mut md, stores) = converged_world(false);
    md.status.as_mut().unwrap().ready_replicas = 0;
    let (ctx, mut api) = mock_context(stores);
    let task = tokio::spawn(reconcile(Arc::new(md), ctx));
    let _write = api
        .expect(Method::PATCH, "/modeldeployments/fraud/status")
        .await;
    task.abort();
}

/// The converged world with a webhook configured and, in status, a resolved
/// alert's notification the webhook has not confirmed.
fn world_with_a_pending_notification() -> (ModelDeployment, Stores, AlertNotification) {
    let (mut md, stores) = converged_world(false);
    md.spec.alerts = Some(
        serde_json::from_value(
            json!({"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}}),
        )
        .unwrap(),
    );
    let alert = FiringAlert {
        alertname: "ModelRolledBack".into(),
        severity: "warning".into(),
        revision: 2,
        model_version: "2.0".into(),
        since: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
        ..FiringAlert::default()
    };
    let notification = AlertNotification {
        state: AlertState::Resolved,
        key: crate::alerts::outbox::key("md-uid", &alert, AlertState::Resolved),
        alert,
        pending: vec![AlertChannel::Webhook],
        decided_at: Some(Time(Timestamp::from_second(1_800_000_000).unwrap())),
    };
    md.status.as_mut().unwrap().alert_outbox = vec![notification.clone()];
    (md, stores, notification)
}

#[tokio::test]
async fn converged_with_alert_channels_and_nothing_pending_makes_no_request() {
    let (mut md, stores, _) = world_with_a_pending_notification();
    md.status.as_mut().unwrap().alert_outbox.clear();
    reconcile_against_silent_api(md, stores).await;
}

#[tokio::test]
async fn a_pending_notification_is_retried_without_a_status_write() {
    let (md, stores, _) = world_with_a_pending_notification();
    let (ctx, mut api) = mock_context(stores);
    let task = tokio::spawn(reconcile(Arc::new(md), ctx));
    // The only request: the delivery task reading the webhook's Secret.
    let _read = api.expect(Method::GET, "/secrets/hook").await;
    let action = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("reconcile does not wait for the delivery")
        .unwrap()
        .unwrap();
    assert!(
        format!("{action:?}").contains("7s"),
        "comes back for the attempt's result: {action:?}"
    );
}

#[tokio::test]
async fn a_confirmed_notification_is_removed_in_one_status_write_and_not_sent_again() {
    let (md, stores, notification) = world_with_a_pending_notification();
    let (ctx, mut api) = mock_context(stores);
    ctx.outbound.deliverer.confirm(
        "ml",
        "fraud",
        crate::alerts::outbox::Confirmed {
            key: notification.key.clone(),
            channel: AlertChannel::Webhook,
        },
    );
    let task = tokio::spawn(reconcile(Arc::new(md.clone()), ctx.clone()));
    let mut write = api
        .expect(Method::PATCH, "/modeldeployments/fraud/status")
        .await;
    let patch = write.json().await;
    assert!(
        patch["status"].get("alertOutbox").is_none(),
        "the confirmed notification is still in {patch}"
    );
    // The API server's answer: the object with that status.
    let mut written = serde_json::to_value(&md).unwrap();
    written["status"] = patch["status"].clone();
    written["metadata"]["resourceVersion"] = json!("8");
    write.respond(200, &written);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("reconcile ends")
        .unwrap()
        .unwrap();
    // Nothing else: no Secret read, so no second delivery.
    api.expect_none(Duration::from_millis(200)).await;
    // A pass whose cache has not seen that write yet waits for it: it
    // sends nothing, so it neither writes stale status nor delivers again.
    let result = tokio::time::timeout(Duration::from_secs(5), reconcile(Arc::new(md), ctx)).await;
    assert!(result.is_ok_and(|r| r.is_ok()), "the stale pass ends");
    api.expect_none(Duration::from_millis(200)).await;
}

/// Regression: kube-runtime's `Store::wait_until_ready` wakes only the last of
/// several concurrent waiters; the Stores gate must wake all of them.
#[tokio::test]
async fn every_concurrent_reconcile_gets_past_the_cache_gate() {
    let (deployments, mut dw) = reflector::store::<CachedDeployment>();
    let (services, mut sw) = reflector::store::<CachedService>();
    let (hpas, mut hw) = reflector::store::<HorizontalPodAutoscaler>();
    let (pdbs, mut bw) = reflector::store::<PodDisruptionBudget>();
    let revisions = indexed_of(Vec::<PartialObjectMeta<ControllerRevision>>::new());
    let pods = indexed_of(Vec::<WatchedPod>::new());
    let stores = Stores::new(deployments, services, hpas, pdbs, revisions, pods);
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let stores = stores.clone();
            tokio::spawn(async move { stores.wait_until_ready().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    dw.apply_watcher_event(&watcher::Event::InitDone);
    sw.apply_watcher_event(&watcher::Event::InitDone);
    hw.apply_watcher_event(&watcher::Event::InitDone);
    bw.apply_watcher_event(&watcher::Event::InitDone);
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("a waiter was never woken")
            .unwrap();
    }
}
