//! Rollback latency: from a bad revision becoming observable (the first pod
//! of the new revision in CrashLoopBackOff) to the Deployment's template back
//! on the stable revision. Both moments are taken from this program's own
//! watches, which see the same events as the operator, so the figure is the
//! operator's reaction time plus its writes, not polling delay.
//!
//! Run with `make bench-rollback` (needs `make cluster-up`). Prints a table
//! and writes `.local/bench/rollback.json`. ROLLBACKS sets the count (20).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use model_operator::api::{ModelDeployment, Phase};
use serde_json::json;
use support::*;

enum Seen {
    Pod(Pod),
    Deployment(Deployment),
}

fn crash_looping(pod: &Pod, revision: &str) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    labels.get("mlops.dev/revision").map(String::as_str) == Some(revision)
        && pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("ROLLBACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "bench-rollback").await;
    let _operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let mut latencies = Vec::new();

    for round in 0..rounds {
        let name = format!("m{round}");
        let md: ModelDeployment = serde_json::from_value(json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1,
                     "rollout": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 600}},
        }))
        .unwrap();
        mds.create(&PostParams::default(), &md)
            .await
            .expect("create");
        wait_for(&mds, &name, "be Healthy", Duration::from_secs(120), |m| {
            m.status.as_ref().and_then(|s| s.phase) == Some(Phase::Healthy)
        })
        .await;

        // Watch before breaking it, so no event is missed.
        let selector = format!("app.kubernetes.io/instance={name}");
        let pods = watcher(
            Api::<Pod>::namespaced(client.clone(), &ns.name),
            watcher::Config::default().labels(&selector),
        )
        .applied_objects()
        .map(|p| p.map(Seen::Pod));
        let deployments = watcher(
            Api::<Deployment>::namespaced(client.clone(), &ns.name),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .applied_objects()
        .map(|d| d.map(Seen::Deployment));
        let mut seen = futures::stream::select(pods, deployments).boxed();
        // Let both watches finish their initial list.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let bad = json!({"spec": {"model": {"version": "2"}, "podMetadata": {"labels": {"mlops.dev/simulate": "crash-loop"}}}});
        mds.patch(&name, &PatchParams::default(), &Patch::Merge(bad))
            .await
            .expect("patch");

        let deadline = Instant::now() + Duration::from_secs(120);
        let mut observable = None;
        let mut went_bad = false;
        while Instant::now() < deadline {
            let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), seen.next()).await
            else {
                continue;
            };
            match event {
                Ok(Seen::Pod(p)) if observable.is_none() && crash_looping(&p, "2") => {
                    observable = Some(Instant::now())
                }
                Ok(Seen::Deployment(d)) => match model_operator::resources::revision_of(&d) {
                    Some(2) => went_bad = true,
                    Some(1) if went_bad && observable.is_some() => {
                        let ms = observable
                            .map(|t| t.elapsed().as_secs_f64() * 1000.0)
                            .unwrap_or_default();
                        latencies.push(ms);
                        break;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        if latencies.len() != round + 1 {
            eprintln!("round {round}: no rollback observed within 120 s");
        }
    }

    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    println!("\nRollback latency: first crash-looping pod seen -> Deployment template reverted");
    println!("| rollouts | p50 (ms) | max (ms) |");
    println!("|---|---|---|");
    if sorted.is_empty() {
        println!("| 0 of {rounds} | - | - |");
        std::process::exit(1);
    }
    let (p50, max) = (percentile(&sorted, 0.5), sorted[sorted.len() - 1]);
    println!("| {} of {rounds} | {p50:.0} | {max:.0} |", sorted.len());
    let dir = repo_root().join(".local/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let report = json!({"benchmark": "rollback_latency", "rollouts": rounds, "measured": sorted.len(),
        "p50_ms": p50, "max_ms": max, "samples_ms": latencies});
    std::fs::write(
        dir.join("rollback.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .expect("write report");
}
