//! Fault test: the API server is stopped for 60 seconds in the middle of a
//! rollout. The operator must back off while it is gone (its own request
//! counter shows how often it tried) and finish the rollout within 30
//! seconds of the API server's return.
//!
//! The shared cluster's API server is never touched: the test makes its own
//! throwaway cluster (hack/cluster.sh with CLUSTER_NAME/WORKDIR/KUBECONFIG,
//! on ports kwokctl picks) and deletes it afterwards, also when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::json;
use support::*;

/// How long the API server stays down: 60 s (the figure);
/// FAULT_DOWN_SECS shortens it for a quick local run.
fn down() -> Duration {
    let secs = std::env::var("FAULT_DOWN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64);
    Duration::from_secs(secs.max(2))
}
/// The requirement: converged this soon after the API server is back.
const CONVERGE: Duration = Duration::from_secs(30);
/// Far above what a backing-off client sends in a minute (tens of requests
/// from six watches and one failing reconcile), far below a retry loop
/// without backoff (thousands).
const STORM: f64 = 600.0;

/// A kwok cluster of its own under target/fault-clusters, deleted on drop.
struct ThrowawayCluster {
    name: String,
    dir: PathBuf,
}

impl ThrowawayCluster {
    fn create(name: &str) -> Self {
        let cluster = Self {
            name: name.to_string(),
            dir: repo_root().join("target/fault-clusters").join(name),
        };
        // A run killed before its drop guard ran left its cluster behind.
        if cluster.dir.exists() {
            cluster.script("down");
        }
        std::fs::create_dir_all(&cluster.dir).expect("cluster dir");
        assert!(cluster.script("up"), "the throwaway cluster did not start");
        cluster
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// hack/cluster.sh for this cluster only; true when it succeeded.
    fn script(&self, command: &str) -> bool {
        Command::new(repo_root().join("hack/cluster.sh"))
            .arg(command)
            .env("CLUSTER_NAME", &self.name)
            .env("CLUSTER_WORKDIR", self.dir.join("kwok"))
            .env("CLUSTER_KUBECONFIG", self.kubeconfig())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        self.script("down");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn total(requests: &[Requests]) -> f64 {
    requests.iter().map(|r| r.count).sum()
}

#[tokio::test]
async fn the_operator_backs_off_while_the_api_server_is_down_and_converges_after() {
    let cluster = ThrowawayCluster::create("fault-apiserver");
    let kubeconfig = cluster.kubeconfig();
    let client = client_from(&kubeconfig).await;
    ensure_crd(&client).await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "fault"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    // Declared after the cluster, so it is dropped (killed) first. One
    // replica without leader election: an elected leader exits by design
    // once it cannot renew its Lease for 10 s (tests/leader_election.rs),
    // and its restart would then be the kubelet's, which this test has none
    // of; what is measured here is how the client and the watches ride out
    // the gap.
    let operator = Operator::start_as(
        &kubeconfig,
        "fault",
        &[
            "--metrics-addr",
            &metrics_addr,
            "--health-addr",
            "127.0.0.1:0",
            "--leader-elect=false",
        ],
    );
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), "fault");
    let deployments = Api::<Deployment>::namespaced(client.clone(), "fault");
    let timeout = Duration::from_secs(120);

    create_stable_m(&mds).await;

    // A bad version whose pods never become ready: it fails only at its
    // progress deadline, which passes while the API server is away, so the
    // rollback can only be decided after it is back. (A crash-looping pod
    // shows within milliseconds here, too soon to stop anything before.)
    let bad = json!({"spec": {"model": {"version": "2"},
        "rollout": {"progressDeadlineSeconds": 20},
        "podMetadata": {"labels": {"mlops.dev/simulate": "never-ready"}}}});
    mds.patch("m", &PatchParams::default(), &Patch::Merge(bad))
        .await
        .unwrap();
    wait_for(&mds, "m", "start revision 2", timeout, |m| {
        outcome(m, 2) == Some(Outcome::Progressing)
    })
    .await;
    assert!(cluster.script("stop-apiserver"), "stop the API server");
    // The requests the operator had in flight fail at once; count from a
    // moment later, to measure its retrying.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = operator_requests(metrics_port).await.expect("metrics");
    tokio::time::sleep(down() - Duration::from_secs(1)).await;
    let after = operator_requests(metrics_port).await.expect("metrics");
    let attempts = requests_between(&before, &after);
    eprintln!(
        "fault_apiserver: {} requests in {}s while the API server was down: {attempts:?}",
        total(&attempts),
        down().as_secs() - 1
    );

    let restart = Instant::now();
    assert!(cluster.script("start-apiserver"), "start the API server");
    let back = Instant::now();
    let m = wait_for(
        &mds,
        "m",
        "roll revision 2 back after the API server returned",
        CONVERGE,
        |m| {
            m.status.as_ref().and_then(|s| s.phase) == Some(Phase::RolledBack)
                && outcome(m, 2) == Some(Outcome::RolledBack)
        },
    )
    .await;
    wait_for(&deployments, "m", "run revision 1 again", CONVERGE, |d| {
        model_operator::resources::revision_of(d) == Some(1)
    })
    .await;
    eprintln!(
        "fault_apiserver: converged {:.1}s after the API server answered again ({:.1}s after it was started)",
        back.elapsed().as_secs_f64(),
        restart.elapsed().as_secs_f64()
    );
    let history: Vec<i64> = m
        .status
        .iter()
        .flat_map(|s| s.history.iter().map(|e| e.revision))
        .collect();
    assert_eq!(history, [1, 2], "no duplicates or gaps");
    assert!(
        total(&attempts) < STORM,
        "{} requests in a minute with no API server: no backoff ({attempts:?}); log {}",
        total(&attempts),
        operator.log.display()
    );
}
