//! GPUs are scarce: a rollout whose new pods the real scheduler cannot
//! place, with nothing else left to roll out, fails as InsufficientCapacity
//! after `rollout.capacityGraceSeconds`, not at the progress deadline, and
//! says so while it waits. Each test has a kwok node of its own with 2
//! `nvidia.com/gpu`; the real kube-scheduler enforces them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};
use support::servers::OwnGpuNode;
use support::*;

/// `m` on the test's node: 2 replicas of 1 GPU each (the node's two), the
/// rollout settings left at their defaults (maxSurge 25%, so one surge pod,
/// maxUnavailable 0), and a progress deadline far beyond the test's
/// patience: a verdict must come from capacity, not from the deadline.
fn two_gpu_model(ns: &str, extra_rollout: Value) -> Value {
    let mut server = json!({"image": "srv:1",
        "resources": {"limits": {"nvidia.com/gpu": "1"}}});
    merge(&mut server, OwnGpuNode::placement(ns));
    let mut rollout = json!({"progressDeadlineSeconds": 3600});
    merge(&mut rollout, extra_rollout);
    json!({"model": {"version": "1.0"}, "server": server, "replicas": 2, "rollout": rollout})
}

fn unschedulable(m: &ModelDeployment) -> Option<&model_operator::api::UnschedulableStatus> {
    m.status.as_ref()?.unschedulable.as_ref()
}

async fn deployment_generation(s: &Setup) -> Option<i64> {
    s.deployments.get("m").await.ok()?.metadata.generation
}

#[tokio::test]
async fn the_surge_deadlock_rolls_back_as_insufficient_capacity() {
    let s = Setup::new("cap-surge").await;
    let ns = s.ns.name.clone();
    let _node = OwnGpuNode::add(&ns, 2);
    s.create(two_gpu_model(&ns, json!({}))).await;
    s.wait("make revision 1 stable on both GPUs", healthy_at(1))
        .await;

    // Revision 2 needs a third GPU for its surge pod while revision 1's two
    // pods hold both: the deadlock.
    let started = Instant::now();
    s.set_version("2.0").await;
    let m = s.wait("roll revision 2 back", rolled_back(2)).await;
    println!(
        "InsufficientCapacity rollback {:?} after the new version was applied",
        started.elapsed()
    );
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "InsufficientCapacity", "{entry:?}");
    assert_eq!(
        entry.message,
        "1/1 new pods unschedulable for 10s with nothing else to roll out: not enough nvidia.com/gpu on the 1 node that matches them",
        "the pending count and the resource, in the operator's words"
    );
    let (_, reason, message) = condition(&m, "Degraded").unwrap();
    assert_eq!(reason, "RolledBack");
    assert!(message.contains("nvidia.com/gpu"), "{message}");
    assert_eq!(unschedulable(&m), None, "a verdict, not a wait");
    s.wait_template(1).await;
    s.wait("serve revision 1 on both GPUs again", |m| {
        condition(m, "Ready").is_some_and(|(status, ..)| status == "True")
    })
    .await;

    // Never retried in a loop: the Deployment's template stays put.
    let generation = deployment_generation(&s).await;
    consistently(
        "the Deployment's generation unchanged",
        Duration::from_secs(60),
        || async {
            let now = deployment_generation(&s).await;
            if now == generation {
                Ok(())
            } else {
                Err(format!("{now:?}, was {generation:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn status_says_what_waits_for_a_node_and_until_when() {
    let s = Setup::new("cap-wait").await;
    let ns = s.ns.name.clone();
    let _node = OwnGpuNode::add(&ns, 2);
    s.create(two_gpu_model(&ns, json!({"capacityGraceSeconds": 86400})))
        .await;
    s.wait("make revision 1 stable", healthy_at(1)).await;

    s.set_version("2.0").await;
    let m = s
        .wait("show the surge pod without a node", |m| {
            unschedulable(m).is_some_and(|u| u.since.is_some())
        })
        .await;
    let u = unschedulable(&m).unwrap();
    assert_eq!(
        (
            u.revision,
            u.pods,
            u.reason.as_str(),
            u.resources.as_slice()
        ),
        (
            2,
            1,
            "InsufficientCapacity",
            ["nvidia.com/gpu".to_string()].as_slice()
        )
    );
    let (status, reason, message) = condition(&m, "Progressing").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PodsUnschedulable")
    );
    assert!(
        message.starts_with("1/1 pods of revision 2 cannot be scheduled: not enough nvidia.com/gpu on the 1 node that matches them; nothing else can roll out: the revision fails (InsufficientCapacity) at "),
        "{message}"
    );
    assert_eq!(phase(&m), Some(Phase::Progressing));
    assert_eq!(
        condition(&m, "Ready").map(|(s, ..)| s).as_deref(),
        Some("True"),
        "revision 1 keeps serving meanwhile"
    );

    // `kubectl model status` shows it too.
    let out = kubectl_model(&ns, &["status", "m"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("SCHEDULING")
            && l.contains("1/1 pods of revision 2 cannot be scheduled: not enough nvidia.com/gpu")
            && l.contains("stuck since")),
        "{text}"
    );

    // A shorter grace (not part of the revision) ends the wait.
    s.set(json!({"rollout": {"capacityGraceSeconds": 1}})).await;
    let m = s.wait("roll revision 2 back", rolled_back(2)).await;
    assert_eq!(history_entry(&m, 2).unwrap().reason, "InsufficientCapacity");
    assert_eq!(history_entry(&m, 2).unwrap().outcome, Outcome::RolledBack);
}

#[tokio::test]
async fn a_first_rollout_that_fits_nowhere_fails_with_the_reason() {
    let s = Setup::new("cap-first").await;
    let ns = s.ns.name.clone();
    let _node = OwnGpuNode::add(&ns, 2);
    let mut spec = two_gpu_model(&ns, json!({}));
    spec["server"]["resources"]["limits"]["nvidia.com/gpu"] = json!("4");
    spec["replicas"] = json!(1);
    s.create(spec).await;
    let m = s
        .wait("fail revision 1", |m| {
            outcome(m, 1) == Some(Outcome::Failed)
        })
        .await;
    let entry = history_entry(&m, 1).unwrap();
    assert_eq!(entry.reason, "InsufficientCapacity", "{entry:?}");
    assert!(
        entry.message.contains("not enough nvidia.com/gpu"),
        "{entry:?}"
    );
    let (status, reason, _) = condition(&m, "Degraded").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "RolloutFailed")
    );
}
