//! Two operator replicas on the real control plane: one leads, the other
//! stands by without writing; killing, stopping (SIGTERM) or freezing the
//! leader hands over without double writes, even mid-rollout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use model_operator::api::{ModelDeployment, Outcome};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("model-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

async fn setup(prefix: &str) -> Setup {
    Setup::builder(prefix)
        .replicas(2)
        .args(&LEASE_TIMING)
        .start()
        .await
}

/// This file's two replicas and what their ModelDeployment `m` left behind.
trait Election {
    fn leases(&self) -> Api<Lease>;
    async fn elected(&self) -> (usize, String);
    async fn taken_over(&self, index: usize, old: &str) -> String;
    async fn rollback_events(&self) -> i32;
    async fn revision_objects(&self) -> Vec<i64>;
}

impl Election for Setup {
    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Waits until exactly one replica leads and the Lease names a holder:
    /// (the leader's index, the holder's identity).
    async fn elected(&self) -> (usize, String) {
        eventually("one replica leads", TIMEOUT, || async {
            let a = self.operators[0].leads().await?;
            let b = self.operators[1].leads().await?;
            let holder = holder(&self.leases()).await?;
            match (a, b) {
                (true, false) => Some((0, holder)),
                (false, true) => Some((1, holder)),
                _ => None,
            }
        })
        .await
    }

    /// Waits until the replica `index` leads under a holder other than
    /// `old`; its identity.
    async fn taken_over(&self, index: usize, old: &str) -> String {
        eventually("the standby takes the lease over", TIMEOUT, || async {
            let holder = holder(&self.leases()).await?;
            (holder != old && self.operators[index].leads().await?).then_some(holder)
        })
        .await
    }

    /// RolledBack Events, counting repeats folded into an event series.
    async fn rollback_events(&self) -> i32 {
        Api::<Event>::namespaced(self.client.clone(), &self.ns.name)
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("RolledBack"))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum()
    }

    async fn revision_objects(&self) -> Vec<i64> {
        let mut numbers: Vec<i64> =
            Api::<ControllerRevision>::namespaced(self.client.clone(), &self.ns.name)
                .list(&ListParams::default())
                .await
                .expect("list revisions")
                .items
                .iter()
                .map(|c| c.revision)
                .collect();
        numbers.sort();
        numbers
    }
}

fn history(m: &ModelDeployment) -> Vec<(i64, Outcome)> {
    m.status
        .as_ref()
        .map(|s| s.history.iter().map(|e| (e.revision, e.outcome)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_fail_over_when_it_is_killed() {
    let (mut s, leader, identity) = elected_and_stable("le-kill", 600).await;
    let standby = 1 - leader;

    // The standby stands by: ready for its Service, but it has never
    // reconciled, and reconciles are where every write of the operator
    // happens.
    assert_eq!(s.operators[standby].leads().await, Some(false));
    eventually("the standby is ready", TIMEOUT, || async {
        s.operators[standby].ready().await.then_some(())
    })
    .await;
    assert_eq!(
        s.operators[standby]
            .metric("model_operator_reconciles_total")
            .await,
        Some(0.0),
        "the standby reconciled"
    );
    assert!(
        s.operators[leader]
            .metric("model_operator_reconciles_total")
            .await
            .is_some_and(|n| n > 0.0)
    );
    assert_eq!(
        holder(&s.leases()).await.as_deref(),
        Some(identity.as_str())
    );

    // SIGKILL: no hand-over; the standby waits out the lease.
    s.operators[leader].kill();
    let killed = Instant::now();
    let successor = s.taken_over(standby, &identity).await;
    println!(
        "takeover after a kill: {:?} ({identity} -> {successor})",
        killed.elapsed()
    );

    // The new leader reconciles new changes.
    s.set(version("2", None)).await;
    let m = s.wait("make revision 2 stable", healthy_at(2)).await;
    assert_eq!(
        history(&m),
        vec![(1, Outcome::Superseded), (2, Outcome::Stable)]
    );
    assert!(s.operators[standby].ready().await);
}

#[tokio::test]
async fn sigterm_hands_the_lease_over() {
    let (mut s, leader, identity) = elected_and_stable("le-term", 600).await;
    let standby = 1 - leader;

    s.operators[leader].signal("TERM");
    let stopped = Instant::now();
    let status = s.operators[leader].wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "a graceful stop exits 0: {status}");
    assert!(
        s.operators[leader].logs().contains("released the lease"),
        "the leader released the lease:\n{}",
        s.operators[leader].logs()
    );
    let successor = s.taken_over(standby, &identity).await;
    // Figures, not assertions: about one retry period, not a lease duration.
    println!(
        "hand-over after SIGTERM: {:?} ({identity} -> {successor})",
        stopped.elapsed()
    );
    s.set(version("2", None)).await;
    s.wait("make revision 2 stable", healthy_at(2)).await;
}

/// Two replicas, one elected, and revision 1 stable: (setup, the leader's
/// index, its identity).
async fn elected_and_stable(prefix: &str, progress_deadline: i32) -> (Setup, usize, String) {
    let s = setup(prefix).await;
    let (leader, identity) = s.elected().await;
    s.create(rolling(
        json!({"model": {"version": "1"}}),
        progress_deadline,
    ))
    .await;
    s.wait("make revision 1 stable", healthy_at(1)).await;
    (s, leader, identity)
}

/// Two replicas, revision 1 stable, then a bad revision 2 that the leader
/// has just started rolling out: (setup, the leader's index, its identity).
/// Its pods never get ready, so it fails at a 15 s progress deadline: a
/// window to hit the leader before the verdict. (Crash-looping pods are
/// judged here within a fraction of a second of the new template, too fast
/// to aim at.)
async fn bad_rollout(prefix: &str) -> (Setup, usize, String) {
    let (s, leader, identity) = elected_and_stable(prefix, 15).await;
    s.set(version("2", Some("never-ready"))).await;
    s.wait_template(2).await;
    (s, leader, identity)
}

/// The rollout ends rolled back exactly once, by whichever replica.
async fn assert_rolled_back_once(s: &Setup) {
    let m = s.wait("roll revision 2 back", rolled_back(2)).await;
    s.wait_template(1).await;
    assert_eq!(revisions(&m), (Some(1), Some(1), Some(2)));
    assert_eq!(
        history(&m),
        vec![(1, Outcome::Stable), (2, Outcome::RolledBack)],
        "no duplicates or gaps"
    );
    assert_eq!(s.revision_objects().await, vec![1, 2]);
    // The Event is recorded after the status: wait for it, then count.
    eventually("the rollback Event is recorded", TIMEOUT, || async {
        (s.rollback_events().await > 0).then_some(())
    })
    .await;
    assert_eq!(s.rollback_events().await, 1, "one rollback, one Event");
}

/// Revision 2 has started and is undecided.
async fn assert_mid_rollout(s: &Setup) {
    let m = s.mds.get("m").await.expect("get");
    assert_eq!(outcome(&m, 2), Some(Outcome::Progressing), "mid-rollout");
}

#[tokio::test]
async fn killing_the_leader_mid_rollout_rolls_back_exactly_once() {
    let (mut s, leader, identity) = bad_rollout("le-rollout-kill").await;
    s.operators[leader].kill();
    assert_mid_rollout(&s).await;

    s.taken_over(1 - leader, &identity).await;
    assert_rolled_back_once(&s).await;
}

/// A partition without a network: SIGSTOP freezes the leader mid-rollout,
/// the standby takes over and rolls back; the old leader, thawed, must find
/// its lease gone and exit without writing.
#[tokio::test]
async fn a_frozen_leader_thawed_after_the_takeover_writes_nothing() {
    let (mut s, leader, identity) = bad_rollout("le-rollout-freeze").await;
    s.operators[leader].signal("STOP");
    assert_mid_rollout(&s).await;

    s.taken_over(1 - leader, &identity).await;
    assert_rolled_back_once(&s).await;
    let before = s.mds.get("m").await.expect("get");
    let generation = s
        .deployments
        .get("m")
        .await
        .expect("get")
        .metadata
        .generation;

    s.operators[leader].signal("CONT");
    let status = s.operators[leader].wait_exit(Duration::from_secs(60)).await;
    let logs = s.operators[leader].logs();
    assert!(
        !status.success(),
        "a leader that lost its lease exits non-zero"
    );
    assert!(logs.contains("lost the leader lease"), "{logs}");
    println!(
        "writes the thawed leader tried and the fence refused: {}",
        logs.matches("write refused").count()
    );

    // Nothing the old leader might have written shows: the same history, the
    // same Deployment spec, still one rollback.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = s.mds.get("m").await.expect("get");
    assert_eq!(history(&after), history(&before));
    assert_eq!(revisions(&after), revisions(&before));
    assert_eq!(
        s.deployments
            .get("m")
            .await
            .expect("get")
            .metadata
            .generation,
        generation,
        "the Deployment was not rewritten"
    );
    assert_eq!(s.rollback_events().await, 1);
}
