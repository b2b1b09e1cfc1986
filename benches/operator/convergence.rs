//! N ModelDeployments against the floor, then, with all N converged: API
//! quietness, memory, and a restart.
//!
//! The floor is what the operator's job costs the cluster without it: a
//! plain client creating the very Deployments and Services the operator's
//! builders produce (same pods, same concurrency) and waiting for the same
//! pods to be Ready. The operator's figure is from the first create of a
//! ModelDeployment to the last one reporting `Ready=True` in its status.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use model_operator::api::{ModelDeployment, ServedVersion};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use crate::probe::{Probed, describe, non_watch, writes};
use crate::report::{Row, mib};
use crate::status_lag;
use crate::support::{Requests, TestNamespace, apiserver_requests, kubectl, requests_between};

/// Creates at once, like the operator's default `--concurrency`.
pub const CONCURRENCY: usize = 16;
/// How long N models may take to converge before the bench gives up:
/// 15 minutes, or 0.2 s per model for more (the 10,000 stretch run's floor
/// alone can take over 15 minutes on two cores).
fn converge_timeout(n: usize) -> Duration {
    Duration::from_secs(900).max(Duration::from_millis(200 * n as u64))
}

pub struct Settings {
    pub n: usize,
    pub quiet: Duration,
    /// Floor and operator runs, interleaved.
    pub runs: usize,
}

pub fn model(name: &str, namespace: &str) -> ModelDeployment {
    serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1},
    }))
    .expect("bench manifest")
}

/// Names of the objects in `api` for which `ready` holds, kept current by a
/// watch; the receiver sees the count.
pub fn count_ready<K>(api: Api<K>, ready: fn(&K) -> bool) -> watch::Receiver<usize>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        let mut names = HashSet::new();
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            let Ok(obj) = event else { continue };
            if ready(&obj) {
                names.insert(obj.name_any());
            } else {
                names.remove(&obj.name_any());
            }
            if tx.send(names.len()).is_err() {
                return;
            }
        }
    });
    rx
}

pub async fn until_count(rx: &mut watch::Receiver<usize>, n: usize) -> bool {
    tokio::time::timeout(converge_timeout(n), rx.wait_for(|c| *c >= n))
        .await
        .is_ok_and(|r| r.is_ok())
}

fn deployment_ready(d: &Deployment) -> bool {
    d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1)
}

pub fn md_ready(m: &ModelDeployment) -> bool {
    m.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Deletes a bench namespace and waits until it is gone, so the next phase
/// neither competes with its pods nor leaves them behind.
pub async fn delete_namespace(ns: &TestNamespace) {
    let name = ns.name.clone();
    let _ = tokio::task::spawn_blocking(move || {
        kubectl(&["delete", "namespace", &name, "--timeout=600s"])
    })
    .await;
}

/// Creates each of `0..n` with at most CONCURRENCY at once; the time taken.
pub async fn create_all<F, Fut>(n: usize, create: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    futures::stream::iter(0..n)
        .map(create)
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .expect("bench create");
}

/// Creates models m0..m{n-1} in `mds`' namespace, CONCURRENCY at once.
pub async fn create_models(mds: &Api<ModelDeployment>, n: usize) {
    let namespace = mds.namespace().unwrap_or_default().to_string();
    create_all(n, |i| {
        let mds = mds.clone();
        let md = model(&format!("m{i}"), &namespace);
        async move {
            mds.create(&PostParams::default(), &md).await?;
            Ok(())
        }
    })
    .await;
}

/// The floor: seconds until N Deployments (and their Services) made by a
/// plain client all have their pod Ready.
async fn floor(client: &Client, n: usize, round: usize) -> Timed {
    let ns = TestNamespace::new(client, &format!("bench-floor-{n}-{round}")).await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    let services = Api::<Service>::namespaced(client.clone(), &ns.name);
    let mut ready = count_ready(deployments.clone(), deployment_ready);
    let apiserver_before = apiserver_requests(client).await.unwrap_or_default();
    let start = Instant::now();
    create_all(n, |i| {
        let (deployments, services) = (deployments.clone(), services.clone());
        // The operator's own builders, from an object that was never stored:
        // no owner reference, nothing else differs.
        let md = model(&format!("m{i}"), &ns.name);
        let served = ServedVersion::requested(&md);
        async move {
            let pp = PostParams::default();
            deployments
                .create(
                    &pp,
                    &model_operator::resources::deployment(&md, &served, 1, &Default::default()),
                )
                .await?;
            let name = served.model_name().to_string();
            services
                .create(&pp, &model_operator::resources::service(&md, &name))
                .await?;
            Ok(())
        }
    })
    .await;
    assert!(until_count(&mut ready, n).await, "floor: pods not Ready");
    let seconds = start.elapsed().as_secs_f64();
    let apiserver = requests_between(
        &apiserver_before,
        &apiserver_requests(client).await.unwrap_or_default(),
    );
    delete_namespace(&ns).await;
    Timed { seconds, apiserver }
}

/// Distinct ModelDeployments the operator logged as reconciled after byte
/// `offset` of its (JSON) log.
fn reconciled_since(log: &std::path::Path, offset: u64) -> usize {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default());
    tail.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reconciled"))
        })
        .filter_map(|v| v["fields"]["name"].as_str().map(String::from))
        .collect::<HashSet<_>>()
        .len()
}

/// One timed convergence: seconds until all N are Ready, and what the API
/// server served meanwhile (every client's requests).
struct Timed {
    seconds: f64,
    apiserver: Vec<Requests>,
}

/// An operator run, kept alive after its convergence for the measurements
/// of the last run.
struct OperatorRun {
    timed: Timed,
    op: Probed,
    ns: TestNamespace,
    /// The operator's own request counter while converging.
    requests: Vec<Requests>,
    reconciles: f64,
    /// The operator's CPU seconds while converging.
    cpu: f64,
    idle_rss: u64,
    lags: Option<status_lag::Lags>,
}

async fn operator_run(client: &Client, n: usize, round: usize) -> OperatorRun {
    let ns = TestNamespace::new(client, &format!("bench-op-{n}-{round}")).await;
    let op = Probed::start(&ns.name);
    op.until_ready(Duration::from_secs(60))
        .await
        .expect("operator ready");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = op.memory().map(|(rss, _)| rss).unwrap_or_default();
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let mut ready = count_ready(mds.clone(), md_ready);
    let (requests_before, reconciles_before) = (op.requests().await, op.reconciles().await);
    let cpu_before = op.cpu_seconds().unwrap_or_default();
    let apiserver_before = apiserver_requests(client).await.unwrap_or_default();
    let start = Instant::now();
    create_models(&mds, n).await;
    assert!(until_count(&mut ready, n).await, "operator: not all Ready");
    let seconds = start.elapsed().as_secs_f64();
    let apiserver = requests_between(
        &apiserver_before,
        &apiserver_requests(client).await.unwrap_or_default(),
    );
    let requests = requests_between(&requests_before, &op.requests().await);
    let (reconciles, cpu) = (
        op.reconciles().await - reconciles_before,
        op.cpu_seconds().unwrap_or_default() - cpu_before,
    );
    OperatorRun {
        timed: Timed { seconds, apiserver },
        requests,
        reconciles,
        cpu,
        lags: status_lag::measure(client, &ns.name).await,
        op,
        ns,
        idle_rss,
    }
}

/// The middle value and the range: "41.2 s (38.0–45.9)".
pub fn median_and_spread(values: &[f64], unit: &str) -> (f64, String) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    let text = if sorted.len() == 1 {
        format!("{median:.2}{unit}")
    } else {
        format!("{median:.2}{unit} ({lo:.2}–{hi:.2}, {} runs)", sorted.len())
    };
    (median, text)
}

/// A writing verb, as the operator's counter (create, patch…) or the API
/// server's (POST, APPLY…) names it.
fn is_write(verb: &str) -> bool {
    model_operator::client::is_write(verb)
        || matches!(
            verb,
            "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
        )
}

/// Write requests per model, by verb and resource, averaged over runs.
fn per_model(runs: &[&[Requests]], n: usize) -> (f64, String) {
    let mut sum: Vec<Requests> = Vec::new();
    for run in runs {
        // The leader Lease's renewals are leader election's price, not the
        // models'.
        for r in run
            .iter()
            .filter(|r| is_write(&r.verb) && r.resource != "leases")
        {
            match sum
                .iter_mut()
                .find(|s| s.verb == r.verb && s.resource == r.resource)
            {
                Some(s) => s.count += r.count,
                None => sum.push(r.clone()),
            }
        }
    }
    let scale = (runs.len() * n) as f64;
    sum.iter_mut().for_each(|r| r.count /= scale);
    sum.sort_by(|a, b| b.count.total_cmp(&a.count));
    let total: f64 = sum.iter().map(|r| r.count).sum();
    let text = sum
        .iter()
        .filter(|r| r.count >= 0.01)
        .map(|r| format!("{} {} {:.2}", r.verb, r.resource, r.count))
        .collect::<Vec<_>>()
        .join(", ");
    (total, text)
}

pub async fn run(client: &Client, settings: &Settings) -> Vec<Row> {
    let n = settings.n;
    let mut rows = Vec::new();
    // Floor and operator alternate on the same cluster, so drift in the
    // machine's load hits both sides alike; each run's namespace is gone
    // before the next run starts.
    let mut floors = Vec::new();
    let mut operators: Vec<OperatorRun> = Vec::new();
    for round in 0..settings.runs.max(1) {
        eprintln!("bench: N={n}: floor, run {}", round + 1);
        floors.push(floor(client, n, round).await);
        if let Some(previous) = operators.last_mut() {
            delete_namespace(&previous.ns).await;
        }
        eprintln!("bench: N={n}: operator, run {}", round + 1);
        operators.push(operator_run(client, n, round).await);
    }
    let ratios: Vec<f64> = floors
        .iter()
        .zip(&operators)
        .map(|(f, o)| o.timed.seconds / f.seconds)
        .collect();
    let (ratio, ratio_text) = median_and_spread(&ratios, "×");
    let (_, op_text) = median_and_spread(
        &operators
            .iter()
            .map(|o| o.timed.seconds)
            .collect::<Vec<_>>(),
        " s",
    );
    let (_, floor_text) =
        median_and_spread(&floors.iter().map(|f| f.seconds).collect::<Vec<_>>(), " s");
    rows.push(
        Row::new(
            format!("N={n}: all Ready, operator vs floor"),
            format!("{ratio_text}: operator {op_text}, floor {floor_text}"),
        )
        .target("≤ 1.25×", ratio <= 1.25)
        .data(json!({"n": n, "ratios": ratios,
                     "operator_s": operators.iter().map(|o| o.timed.seconds).collect::<Vec<_>>(),
                     "floor_s": floors.iter().map(|f| f.seconds).collect::<Vec<_>>()})),
    );
    rows.push(status_lag::row(
        n,
        &operators
            .iter()
            .filter_map(|o| o.lags.as_ref())
            .collect::<Vec<_>>(),
    ));
    let own: Vec<&[Requests]> = operators.iter().map(|o| o.requests.as_slice()).collect();
    let (writes_per_model, own_text) = per_model(&own, n);
    let reconciles =
        operators.iter().map(|o| o.reconciles).sum::<f64>() / (operators.len() * n) as f64;
    let cpu: Vec<f64> = operators.iter().map(|o| o.cpu).collect();
    let (cpu_median, cpu_text) = median_and_spread(&cpu, " s");
    rows.push(
        Row::new(
            format!("N={n}: operator writes per ModelDeployment while converging"),
            format!(
                "{writes_per_model:.2} ({own_text}); {reconciles:.1} reconciles per ModelDeployment; operator CPU {cpu_text}"
            ),
        )
        .target("≤ 6", writes_per_model <= 6.0)
        .data(json!({"n": n, "writes_per_model": writes_per_model, "reconciles_per_model": reconciles,
                     "operator_cpu_s": cpu, "operator_cpu_median_s": cpu_median})),
    );
    for (side, runs) in [
        (
            "floor",
            floors
                .iter()
                .map(|f| f.apiserver.as_slice())
                .collect::<Vec<_>>(),
        ),
        (
            "operator",
            operators
                .iter()
                .map(|o| o.timed.apiserver.as_slice())
                .collect(),
        ),
    ] {
        let (total, text) = per_model(&runs, n);
        rows.push(
            Row::new(
                format!(
                    "N={n}: API server writes per model while converging, {side} (all clients)"
                ),
                format!("{total:.2} ({text})"),
            )
            .data(json!({"n": n, "side": side, "writes_per_model": total})),
        );
    }
    let Some(OperatorRun {
        mut op,
        ns,
        idle_rss: idle,
        ..
    }) = operators.pop()
    else {
        return rows;
    };

    eprintln!("bench: N={n}: quiet window of {:?}", settings.quiet);
    // The last status writes of the convergence land in the first seconds.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = op.requests().await;
    tokio::time::sleep(settings.quiet).await;
    let during = requests_between(&before, &op.requests().await);
    let (w, other) = (writes(&during), non_watch(&during));
    rows.push(
        Row::new(
            format!("N={n}: requests in {} s converged", settings.quiet.as_secs()),
            format!(
                "{w} writes, {other} non-watch requests besides the leader Lease ({})",
                describe(&during)
            ),
        )
        .target("0 writes, only watches", w == 0 && other == 0)
        .data(json!({"n": n, "window_s": settings.quiet.as_secs(), "writes": w, "non_watch": other,
                     "requests": during.iter().map(|r| json!([r.verb, r.resource, r.count])).collect::<Vec<_>>()})),
    );
    let at_n = op.memory().map(|(rss, _)| rss).unwrap_or_default();
    rows.push(
        Row::new(
            "operator RSS, idle (no ModelDeployment)",
            format!("{:.1} MiB", mib(idle)),
        )
        .target("≤ 30 MiB", mib(idle) <= 30.0)
        .data(json!({"rss_kib": idle})),
    );
    let (target, at_n_met) = match n {
        1000 => ("≤ 40 MiB at 1,000", mib(at_n) <= 40.0),
        10_000 => ("≤ 200 MiB at 10,000", mib(at_n) <= 200.0),
        _ => ("", true),
    };
    rows.push(
        Row::new(
            format!("N={n}: operator RSS, converged"),
            format!("{:.1} MiB", mib(at_n)),
        )
        .target(target, at_n_met)
        .data(json!({"n": n, "rss_kib": at_n})),
    );

    eprintln!("bench: N={n}: restart");
    let offset = std::fs::metadata(&op.operator.log)
        .map(|m| m.len())
        .unwrap_or(0);
    op.restart().await;
    let synced = op
        .until_ready(Duration::from_secs(300))
        .await
        .expect("operator ready after restart");
    let deadline = Instant::now() + converge_timeout(n);
    while reconciled_since(&op.operator.log, offset) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = op.started.elapsed();
    // Writes made late in the restart still count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart_requests = op.requests().await;
    let restart_writes = writes(&restart_requests);
    let peak = op.memory().map(|(_, hwm)| hwm).unwrap_or_default();
    rows.push(
        Row::new(
            format!("N={n}: restart → caches synced / all reconciled"),
            format!(
                "{:.2} s / {:.2} s, {restart_writes} writes besides the leader Lease ({})",
                synced.as_secs_f64(),
                all.as_secs_f64(),
                describe(&restart_requests)
            ),
        )
        .target("0 writes", restart_writes == 0)
        .data(
            json!({"n": n, "synced_s": synced.as_secs_f64(), "all_reconciled_s": all.as_secs_f64(),
                     "writes": restart_writes}),
        ),
    );
    let relist = mib(peak) / mib(at_n).max(0.001);
    rows.push(
        Row::new(
            format!("N={n}: operator peak RSS (VmHWM) of a fresh start listing all"),
            format!("{:.1} MiB = {relist:.2}× converged", mib(peak)),
        )
        .target("≤ 1.2× converged", relist <= 1.2)
        .data(json!({"n": n, "hwm_kib": peak})),
    );

    drop(op);
    // The stretch run's cluster is deleted right after: deleting 10,000
    // models one namespace at a time first would only add minutes.
    if std::env::var_os("BENCH_SKIP_LAST_DELETE").is_none() {
        eprintln!("bench: N={n}: deleting");
        delete_namespace(&ns).await;
    }
    rows
}
