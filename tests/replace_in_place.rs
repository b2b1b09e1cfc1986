//! `rollout.podReplacement: ReplaceInPlace` on a node with exactly the
//! model's 2 GPUs: a new version rolls out, and a metric-triggered rollback
//! (real Prometheus, test exporter) rolls it back, without ever asking for a
//! third GPU and with a pod serving throughout. A watch on the namespace's
//! pods checks both at every event the API server sends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use model_operator::api::{ModelDeployment, Outcome};
use serde_json::json;
use support::gates::*;
use support::pod_watch::{Change, revision, watch_pod_events};
use support::servers::OwnGpuNode;
use support::*;

const GPU: &str = "nvidia.com/gpu";

/// What the pod watch saw, over every event after its first list.
#[derive(Debug, Default)]
struct Seen {
    events: usize,
    /// GPUs requested by live pods (not terminating, not finished): the
    /// most at any event, and the event where it was.
    max_gpus: u32,
    max_gpus_at: String,
    /// Ready live pods: the fewest at any event.
    min_ready: Option<usize>,
    min_ready_at: String,
    /// Pods terminating at the same time as others were live, the most
    /// GPUs of both together (printed: a terminating pod's GPU is freed when
    /// it is gone, which kwok makes immediate).
    max_gpus_with_terminating: u32,
    /// Revisions whose pods were created while the watch ran.
    created: BTreeMap<String, usize>,
}

fn gpus(pod: &Pod) -> u32 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    spec.containers
        .iter()
        .filter_map(|c| c.resources.as_ref())
        .filter_map(|r| r.limits.as_ref().or(r.requests.as_ref()))
        .filter_map(|l| l.get(GPU))
        .filter_map(|q| q.0.parse::<u32>().ok())
        .sum()
}

fn finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Watches the pods of `ns` until the task is aborted; returns once the
/// first list is in, so no event after the call is missed.
async fn watch_pods(pods: Api<Pod>) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    let task = watch_pod_events(pods, move |store, change| {
        let what = match change {
            Change::Listed => "list".to_string(),
            Change::Applied { pod, new } => {
                if new {
                    *seen
                        .lock()
                        .unwrap()
                        .created
                        .entry(revision(pod))
                        .or_default() += 1;
                }
                format!(
                    "{} (revision {}, phase {:?}, ready {}, terminating {})",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    revision(pod),
                    pod.status.as_ref().and_then(|s| s.phase.clone()),
                    ready(pod),
                    pod.metadata.deletion_timestamp.is_some()
                )
            }
            Change::Deleted { name } => format!("{name} deleted"),
        };
        let live: Vec<&Pod> = store
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && !finished(p))
            .collect();
        let live_gpus: u32 = live.iter().map(|p| gpus(p)).sum();
        let all_gpus: u32 = store.values().filter(|p| !finished(p)).map(gpus).sum();
        let ready_now = live.iter().filter(|p| ready(p)).count();
        let mut seen = seen.lock().unwrap();
        seen.events += 1;
        if live_gpus > seen.max_gpus {
            seen.max_gpus = live_gpus;
            seen.max_gpus_at = what.clone();
        }
        seen.max_gpus_with_terminating = seen.max_gpus_with_terminating.max(all_gpus);
        if seen.min_ready.is_none_or(|min| ready_now < min) {
            seen.min_ready = Some(ready_now);
            seen.min_ready_at = what;
        }
    })
    .await;
    (out, task)
}

/// `m`: 2 replicas of 1 GPU on the test's 2-GPU node, replaced in place,
/// gated on its error rate.
fn in_place_model(ns: &str) -> serde_json::Value {
    let mut spec = gated("1.0", analysis(json!({}), 0.05, None), json!(null));
    let mut server = json!({"image": "srv:1", "resources": {"limits": {GPU: "1"}}});
    merge(&mut server, OwnGpuNode::placement(ns));
    spec["server"] = server;
    spec["replicas"] = json!(2);
    spec["rollout"]["podReplacement"] = json!("ReplaceInPlace");
    spec["rollout"]["progressDeadlineSeconds"] = json!(3600);
    spec
}

fn assert_within_the_node(seen: &Seen, what: &str) {
    println!("{what}: {seen:?}");
    assert!(seen.events > 0, "{what}: the watch saw no event");
    assert!(
        seen.max_gpus <= 2,
        "{what}: live pods requested {} GPUs at {}",
        seen.max_gpus,
        seen.max_gpus_at
    );
    assert!(
        seen.min_ready.is_some_and(|n| n >= 1),
        "{what}: {:?} pods ready at {}",
        seen.min_ready,
        seen.min_ready_at
    );
}

#[tokio::test]
async fn a_model_holding_every_gpu_rolls_out_and_back_in_place() {
    let s = setup("in-place").await;
    let ns = s.ns.name.clone();
    let _node = OwnGpuNode::add(&ns, 2);
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01), ("3.0", 0.30)]);
    s.scraped("3.0", Some(0.30)).await;
    s.create(in_place_model(&ns)).await;
    s.wait("make revision 1 stable on both GPUs", healthy_at(1))
        .await;
    let pods = Api::<Pod>::namespaced(s.client.clone(), &ns);

    // A new version, with no GPU to spare: replaced one pod at a time.
    let (seen, watch) = watch_pods(pods.clone()).await;
    s.set_version("2.0").await;
    s.wait("make revision 2 stable on both GPUs", healthy_at(2))
        .await;
    watch.abort();
    {
        let seen = seen.lock().unwrap();
        assert_within_the_node(&seen, "rollout");
        assert_eq!(
            seen.created.get("2"),
            Some(&2),
            "two pods of revision 2 created: {seen:?}"
        );
    }

    // A version whose error rate fails its gate: rolled back in place.
    let (seen, watch) = watch_pods(pods).await;
    s.set_version("3.0").await;
    let m: ModelDeployment = s
        .wait("roll revision 3 back on its error rate", |m| {
            outcome(m, 3) == Some(Outcome::RolledBack)
        })
        .await;
    assert_eq!(history_entry(&m, 3).unwrap().reason, "AnalysisFailed");
    s.wait_template(2).await;
    eventually(
        "revision 2 on both GPUs again",
        std::time::Duration::from_secs(120),
        || async {
            let d = s.deployments.get("m").await.ok()?;
            let status = d.status?;
            let counts = (
                status.observed_generation,
                status.replicas,
                status.updated_replicas,
                status.available_replicas,
            );
            (counts == (d.metadata.generation, Some(2), Some(2), Some(2))).then_some(())
        },
    )
    .await;
    watch.abort();
    let seen = seen.lock().unwrap();
    assert_within_the_node(&seen, "rollout and metric-triggered rollback");
    assert!(
        seen.created.get("3").is_some_and(|n| *n >= 1)
            && seen.created.get("2").is_some_and(|n| *n >= 1),
        "revision 3 replaced pods, then revision 2 replaced them back: {seen:?}"
    );
}
