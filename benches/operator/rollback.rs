//! Rollback latency: from a bad revision becoming observable (the first pod
//! of the new revision in CrashLoopBackOff) to the Deployment's template back
//! on the stable revision. Both moments are taken from this program's own
//! watches, which see the same events as the operator, so the figure is the
//! operator's reaction time plus its writes, not polling delay.
//!
//!
//! The other way a revision goes bad, a failing metric check, is measured by
//! `metric_rollback`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::Client;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use model_operator::api::{ModelDeployment, Phase};
use serde_json::json;

use crate::convergence::delete_namespace;
use crate::report::{Row, percentile, sorted};
use crate::support::*;

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

pub async fn run(client: &Client, rounds: usize) -> Vec<Row> {
    eprintln!("bench: rollback latency over {rounds} crash-looping rollouts");
    let ns = TestNamespace::new(client, "bench-rollback").await;
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

    drop(_operator);
    delete_namespace(&ns).await;
    let s = sorted(latencies.clone());
    let (p50, max) = (percentile(&s, 0.5), s.last().copied().unwrap_or(f64::NAN));
    vec![
        Row::new(
            format!("rollback, crash-loop: first crash-looping pod seen → template reverted ({} of {rounds})", s.len()),
            format!("p50 {p50:.0} ms, max {max:.0} ms"),
        )
        .data(json!({"rollouts": rounds, "measured": s.len(), "p50_ms": p50, "max_ms": max, "samples_ms": latencies})),
    ]
}
