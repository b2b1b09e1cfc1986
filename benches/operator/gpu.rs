//! The GPU scenario (issue 26): kwok nodes with `nvidia.com/gpu`
//! allocatable, a model of N pods × 1 GPU. Figures, never asserted:
//! - how long after a new version the surge deadlock is reported
//!   (RolledBack, InsufficientCapacity), against the grace it waits;
//! - the most GPUs requested by the model's pods at any pod event
//!   (terminating pods included: they hold their GPU until gone), during a
//!   canary of 50% then 100% and during its promotion, without and with
//!   `dynamicStableScale`, and the pods the promotion started;
//! - time-to-serve-old of a post-promotion rollback inside the warm
//!   window: from the bad value visible in Prometheus to the stable
//!   Deployment serving the previous revision on N available pods, and the
//!   pods it started. kwok starts a pod at once, so what the window saves
//!   on a real GPU (a model load, minutes) shows here as pods started, not
//!   as time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};

use crate::convergence::delete_namespace;
use crate::metric_rollback::{gated_setup, serve};
use crate::report::Row;
use crate::support::gates::{Gates, analysis};
use crate::support::gateway::{install_gateway_api, split_route};
use crate::support::pod_watch::{Change, revision, watch_pod_events};
use crate::support::prometheus_query;
use crate::support::servers::OwnGpuNode;
use crate::support::setup::Setup;
use crate::support::{history_entry, outcome, phase, stable};

/// The model: `n` pods of one GPU each on the test's own GPU node.
fn gpu_model(ns: &str, n: usize, rollout: Value) -> Value {
    let mut server = json!({"image": "srv:1", "resources": {"limits": {"nvidia.com/gpu": "1"}}});
    if let (Some(server), Some(placement)) = (
        server.as_object_mut(),
        OwnGpuNode::placement(ns).as_object().cloned(),
    ) {
        server.extend(placement);
    }
    json!({"model": {"version": "1"}, "server": server, "replicas": n, "rollout": rollout})
}

fn gpus(pod: &Pod) -> u64 {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter_map(|c| c.resources.as_ref()?.limits.as_ref()?.get("nvidia.com/gpu"))
        .filter_map(|q| q.0.parse::<u64>().ok())
        .sum()
}

/// What the pod watch saw: the most GPUs requested before and after the
/// promotion started, and the pods created by revision.
#[derive(Debug, Default)]
struct GpuLog {
    /// GPUs requested after the latest event.
    now: u64,
    canary: u64,
    promotion: u64,
    created: BTreeMap<String, usize>,
}

async fn watch_gpus(
    s: &Setup,
    promoting: Arc<AtomicBool>,
) -> (Arc<Mutex<GpuLog>>, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(GpuLog::default()));
    let out = log.clone();
    let task = watch_pod_events(
        Api::namespaced(s.client.clone(), &s.ns.name),
        move |pods, change| {
            let mut log = log.lock().unwrap();
            if let Change::Applied { pod, new: true } = &change {
                *log.created.entry(revision(pod)).or_default() += 1;
            }
            let requested: u64 = pods.values().map(gpus).sum();
            log.now = requested;
            let most = match promoting.load(Ordering::SeqCst) {
                true => &mut log.promotion,
                false => &mut log.canary,
            };
            *most = (*most).max(requested);
        },
    )
    .await;
    (out, task)
}

fn promoted(revision: i64) -> impl Fn(&ModelDeployment) -> bool {
    move |m| {
        stable(m) == Some(revision)
            && phase(m) == Some(Phase::Healthy)
            && m.status.as_ref().and_then(|s| s.current_revision) == Some(revision)
    }
}

pub async fn run(client: &Client, n: usize) -> Vec<Row> {
    eprintln!("bench: GPU scenario, {n} pods × 1 GPU");
    let mut rows = vec![deadlock(n).await];
    rows.push(canary(client, n, false).await);
    rows.push(canary(client, n, true).await);
    rows.push(warm_rollback(n).await);
    rows
}

/// A full node: the new version's surge pod can never be placed.
async fn deadlock(n: usize) -> Row {
    let s = Setup::new("bench-gpu-deadlock").await;
    let _node = OwnGpuNode::add(&s.ns.name, n as u32);
    s.create(gpu_model(&s.ns.name, n, json!({}))).await;
    s.wait("run version 1", promoted(1)).await;
    let grace = s
        .mds
        .get("m")
        .await
        .unwrap()
        .spec
        .rollout
        .capacity_grace_seconds;
    let started = Instant::now();
    s.set_version("2").await;
    let m = s
        .wait("roll version 2 back", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    let took = started.elapsed().as_secs_f64();
    let reason = history_entry(&m, 2)
        .map(|e| e.reason.clone())
        .unwrap_or_default();
    delete_namespace(&s.ns).await;
    Row::new(
        format!("GPU: surge deadlock reported ({n}×1 GPU on a node of {n}, grace {grace} s)"),
        format!(
            "{took:.1} s after the new version, {:.1} s after the grace ({reason})",
            took - f64::from(grace)
        ),
    )
    .data(json!({"seconds": took, "grace_s": grace, "reason": reason}))
}

/// A canary at 50% then 100%, promoted: the most GPUs at once, and the
/// pods the promotion started.
async fn canary(_client: &Client, n: usize, dynamic: bool) -> Row {
    let prefix = if dynamic {
        "bench-gpu-dynamic"
    } else {
        "bench-gpu-canary"
    };
    let s = Setup::new(prefix).await;
    let _node = OwnGpuNode::add(&s.ns.name, 2 * n as u32);
    let mut canary = json!({"steps": [{"setWeight": 50}, {"setWeight": 100}, {"pause": {}}]});
    if dynamic {
        install_gateway_api();
        split_route(&s.client, &s.ns.name).await;
        canary["trafficRouting"] = json!({"gatewayAPI": {"httpRoute": "r"}});
        canary["dynamicStableScale"] = json!(true);
    }
    s.create(gpu_model(
        &s.ns.name,
        n,
        json!({"strategy": "Canary", "canary": canary}),
    ))
    .await;
    s.wait("run version 1", promoted(1)).await;
    let promoting = Arc::new(AtomicBool::new(false));
    let (log, watch) = watch_gpus(&s, promoting.clone()).await;
    s.set_version("2").await;
    s.wait("hold version 2 at 100%", |m| {
        m.status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| c.revision == 2 && c.waiting_for_promotion)
    })
    .await;
    // Every pod of the 100% step is up before the promotion starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        // What runs when the promotion starts counts, even if no pod event
        // follows.
        let mut log = log.lock().unwrap();
        promoting.store(true, Ordering::SeqCst);
        log.promotion = log.now;
    }
    crate::support::kubectl_model(&s.ns.name, &["promote", "m"]);
    s.wait("promote version 2", promoted(2)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    watch.abort();
    delete_namespace(&s.ns).await;
    let log = log.lock().unwrap();
    let started = log.created.get("2").copied().unwrap_or(0).saturating_sub(n)
        + log.created.get("1").copied().unwrap_or(0);
    let how = if dynamic {
        "with dynamicStableScale"
    } else {
        "without a router"
    };
    Row::new(
        format!("GPU: most GPUs requested, canary 50% → 100% and promotion, {how} ({n}×1 GPU)"),
        format!(
            "canary {} ({:.2}× the model's), promotion {}; pods started by the promotion: {started}",
            log.canary,
            log.canary as f64 / n as f64,
            log.promotion
        ),
    )
    .data(json!({"gpus_canary": log.canary, "gpus_promotion": log.promotion, "pods_started_by_promotion": started, "n": n, "dynamic": dynamic}))
}

/// A post-promotion rollback inside the warm window.
async fn warm_rollback(n: usize) -> Row {
    const NAME: &str = "GPU: post-promotion rollback inside the warm window";
    let s = match gated_setup(NAME, "bench-gpu-warm").await {
        Ok(s) => s,
        Err(skipped) => return skipped,
    };
    let _node = OwnGpuNode::add(&s.ns.name, 3 * n as u32);
    let mut rates: Vec<(String, f64)> = vec![("1".into(), 0.01), ("2".into(), 0.01)];
    serve(&s, &rates);
    s.scraped("2", Some(0.01)).await;
    s.create(gpu_model(
        &s.ns.name,
        n,
        json!({
            "strategy": "Canary",
            "canary": {"steps": [{"setWeight": 100}], "warmRollbackWindow": "30m"},
            "analysis": analysis(json!({"postPromotion": {"action": "Rollback"}}), 0.05, None),
        }),
    ))
    .await;
    s.wait("run version 1", promoted(1)).await;
    s.set_version("2").await;
    s.wait("promote version 2", promoted(2)).await;
    let (log, watch) = watch_gpus(&s, Arc::new(AtomicBool::new(false))).await;
    rates[1].1 = 0.30;
    serve(&s, &rates);
    let query = format!(
        r#"max(model_error_ratio{{namespace="{}",model_version="2"}})"#,
        s.ns.name
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && prometheus_query(&query)
            .await
            .ok()
            .flatten()
            .is_none_or(|v| v < 0.2)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bad = Instant::now();
    let serving_old = crate::support::wait_for(
        &s.deployments,
        "m",
        "serve version 1 again",
        Duration::from_secs(120),
        |d| {
            model_operator::resources::revision_of(d) == Some(1)
                && d.spec.as_ref().and_then(|s| s.paused) != Some(true)
                && d.status.as_ref().and_then(|s| s.available_replicas) == i32::try_from(n).ok()
        },
    )
    .await;
    drop(serving_old);
    let took = bad.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    watch.abort();
    delete_namespace(&s.ns).await;
    let started = log.lock().unwrap().created.values().sum::<usize>();
    Row::new(
        format!("{NAME}: bad value visible in Prometheus → stable serving the previous version ({n}×1 GPU)"),
        format!("{took:.1} s, pods started: {started} (kept: {n} pods, {n} GPUs for the window)"),
    )
    .data(json!({"seconds": took, "pods_started": started, "n": n}))
}
