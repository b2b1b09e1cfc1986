//! Rolling updates, revision history and automatic rollback on the real
//! control plane. Bad versions are simulated with the kwok pod labels.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::json;
use support::*;

/// This file's `m` (2 replicas, one pod replaced at a time) is
/// `rolling(version(..), deadline)`; its template revision label:
async fn template_revision(s: &Setup) -> Option<String> {
    let d = s.deployments.get("m").await.ok()?;
    d.spec?
        .template
        .metadata?
        .labels?
        .get("mlops.dev/revision")
        .cloned()
}

/// Condition `t`, which must be present.
fn present(m: &ModelDeployment, t: &str) -> (String, String, String) {
    condition(m, t).expect(t)
}

#[tokio::test]
async fn good_to_bad_rolls_back_and_explains_why() {
    let s = Setup::new("ro-good-bad").await;
    // A deadline far beyond the test's patience: detection must come from
    // the pods, not from the deadline.
    s.create(rolling(version("2.0.1", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;

    s.set(version("2.1.0", Some("crash-loop"))).await;
    let m = s.wait("roll revision 2 back", rolled_back(2)).await;
    assert_eq!(revisions(&m), (Some(1), Some(1), Some(2)));
    let (ready, _, _) = present(&m, "Ready");
    assert_eq!(ready, "True", "the stable revision keeps serving");
    let (degraded, reason, message) = present(&m, "Degraded");
    assert_eq!((degraded.as_str(), reason.as_str()), ("True", "RolledBack"));
    assert!(
        message.starts_with(
            "serving revision 1 (model 2.0.1); revision 2 (model 2.1.0) rolled back: "
        ) && message.contains("new pods in CrashLoopBackOff"),
        "{message}"
    );
    let bad = history_entry(&m, 2).unwrap();
    assert_eq!(
        (
            bad.reason.as_str(),
            bad.model_version.as_str(),
            bad.image.as_str()
        ),
        ("CrashLoopBackOff", "2.1.0", "srv:1")
    );
    assert!(bad.created_at.is_some() && bad.finished_at.is_some());
    // The decision is written before the Deployment is reverted: wait for
    // the revert itself.
    s.wait_template(1).await;
    // The spec still asks for the bad version: the operator never writes it.
    assert_eq!(m.spec.model.version, "2.1.0");
    // The Event follows the revert (it is posted after the writes).
    s.warning_event("m", "RolledBack", "revision 2").await;
    // Revisions are stored in the cluster.
    let crs = Api::<ControllerRevision>::namespaced(s.client.clone(), &s.ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut numbers: Vec<i64> = crs.items.iter().map(|c| c.revision).collect();
    numbers.sort();
    assert_eq!(numbers, vec![1, 2]);

    // No retry loop: over a watch period the failed template is never
    // applied again.
    let generation = s.deployments.get("m").await.unwrap().metadata.generation;
    consistently(
        "the Deployment runs template revision 1",
        Duration::from_secs(10),
        || async {
            let revision = template_revision(&s).await;
            if revision.as_deref() == Some("1") {
                Ok(())
            } else {
                Err(revision)
            }
        },
    )
    .await;
    assert_eq!(
        s.deployments.get("m").await.unwrap().metadata.generation,
        generation,
        "the Deployment was not rewritten"
    );

    // bad → good: the next good version becomes stable.
    s.set(version("2.2.0", None)).await;
    let m = s.wait("make revision 3 stable", healthy_at(3)).await;
    assert_eq!(outcome(&m, 1), Some(Outcome::Superseded));
    assert_eq!(outcome(&m, 2), Some(Outcome::RolledBack));
    assert_eq!(present(&m, "Degraded").0, "False");
}

#[tokio::test]
async fn bad_to_bad_stays_on_the_original_stable_and_image_pull_failures_count() {
    let s = Setup::new("ro-bad-bad").await;
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;
    s.set(version("1.1", Some("image-pull-error"))).await;
    let m = s.wait("roll back revision 2", rolled_back(2)).await;
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "ImagePullFailed");
    s.set(version("1.2", Some("crash-loop"))).await;
    let m = s.wait("roll back revision 3", rolled_back(3)).await;
    assert_eq!(revisions(&m), (Some(1), Some(1), Some(3)));
    s.wait_template(1).await;
}

#[tokio::test]
async fn never_ready_fails_at_the_progress_deadline() {
    let s = Setup::new("ro-deadline").await;
    s.create(rolling(version("1.0", None), 10)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;
    s.set(version("1.1", Some("never-ready"))).await;
    let m = s.wait("roll back revision 2", rolled_back(2)).await;
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "ProgressDeadlineExceeded");
}

#[tokio::test]
async fn a_bad_first_revision_is_degraded_without_flapping() {
    let s = Setup::new("ro-first-bad").await;
    s.create(rolling(version("1.0", Some("crash-loop")), 600))
        .await;
    let m = s
        .wait("fail revision 1", |m| {
            phase(m) == Some(Phase::Degraded) && outcome(m, 1) == Some(Outcome::Failed)
        })
        .await;
    assert_eq!(present(&m, "Ready").0, "False");
    let (_, reason, message) = present(&m, "Degraded");
    assert_eq!(reason, "RolloutFailed");
    assert!(
        message.contains("no stable revision to roll back to"),
        "{message}"
    );
    // No flapping: once the verdict has settled it stays, with no further
    // writes, while the pods keep crashing. (The reconcile that decides
    // writes twice: the decision first, then the status observed after
    // acting on it; a change of progress only may follow once the 2 s
    // progress window is over. The baseline is taken after all of them:
    // taken at 2 s, it raced that last write by milliseconds.)
    assert_eq!(outcome(&m, 1), Some(Outcome::Failed));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let version_before = s.mds.get("m").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let later = s.mds.get("m").await.unwrap();
    assert_eq!(outcome(&later, 1), Some(Outcome::Failed));
    assert_eq!(
        later.metadata.resource_version, version_before,
        "status was rewritten while nothing changed"
    );
}

#[tokio::test]
async fn going_back_to_a_known_good_version_reuses_its_revision() {
    let s = Setup::new("ro-known-good").await;
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;
    s.set(version("2.0", None)).await;
    s.wait("make revision 2 stable", healthy_at(2)).await;
    s.set(version("1.0", None)).await;
    let m = s.wait("make revision 1 stable again", healthy_at(1)).await;
    assert_eq!(revisions(&m), (Some(1), Some(1), Some(1)));
    assert_eq!(outcome(&m, 2), Some(Outcome::Superseded));
    assert_eq!(
        m.status.as_ref().unwrap().history.len(),
        2,
        "no new revision for a known version"
    );
}

#[tokio::test]
async fn a_version_change_and_a_replicas_change_together() {
    let s = Setup::new("ro-both").await;
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;
    let mut both = version("2.0", None);
    both["replicas"] = json!(4);
    s.set(both).await;
    let m = s
        .wait("serve revision 2 on 4 pods", |m| {
            healthy_at(2)(m) && m.status.as_ref().unwrap().available_replicas == 4
        })
        .await;
    assert_eq!(m.status.unwrap().ready_summary.as_deref(), Some("4/4"));
    // A replicas change alone is not a new revision.
    s.set(json!({"replicas": 3})).await;
    let m = s
        .wait("scale to 3", |m| {
            healthy_at(2)(m) && m.status.as_ref().unwrap().available_replicas == 3
        })
        .await;
    assert_eq!(m.status.unwrap().history.len(), 2);
}

#[tokio::test]
async fn pause_holds_the_running_revision_until_resumed() {
    let s = Setup::new("ro-pause").await;
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;
    let mut paused = version("2.0", None);
    paused["paused"] = json!(true);
    s.set(paused).await;
    let m = s
        .wait("be paused", |m| phase(m) == Some(Phase::Paused))
        .await;
    assert_eq!(present(&m, "Progressing").1, "Paused");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        template_revision(&s).await.as_deref(),
        Some("1"),
        "nothing rolls out while paused"
    );
    s.set(json!({"paused": false})).await;
    let m = s
        .wait("roll revision 2 out once resumed", healthy_at(2))
        .await;
    assert_eq!(revisions(&m).1, Some(2));
}

#[tokio::test]
async fn an_explicit_retry_tries_a_failed_revision_again() {
    let s = Setup::new("ro-retry").await;
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;
    s.set(version("2.0", Some("crash-loop"))).await;
    let m = s.wait("roll back revision 2", rolled_back(2)).await;
    let finished = |m: &ModelDeployment| history_entry(m, 2).and_then(|e| e.finished_at);
    let first_failure = finished(&m);
    // Event times have second precision: make the second failure distinguishable.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let retry = json!({"metadata": {"annotations": {"mlops.dev/retry": "first-retry"}}});
    s.mds
        .patch("m", &PatchParams::default(), &Patch::Merge(retry))
        .await
        .unwrap();
    let m = s
        .wait("record the retry", |m| {
            let e = history_entry(m, 2);
            e.as_ref().and_then(|e| e.retry_token.as_deref()) == Some("first-retry")
                && e.map(|e| e.outcome) == Some(Outcome::RolledBack)
        })
        .await;
    assert_eq!(
        revisions(&m),
        (Some(1), Some(1), Some(2)),
        "tried and rolled back again"
    );
    // The token is recorded only when a rollout starts; the failure is new.
    assert!(
        finished(&m) > first_failure,
        "revision 2 failed again after the retry"
    );
}

#[tokio::test]
async fn a_rollout_survives_the_operator_being_killed() {
    let mut s = Setup::new("ro-kill").await;
    s.create(rolling(version("1.0", None), 15)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;

    // Never-ready pods fail only at the 15 s deadline: a real window to kill
    // the operator mid-rollout, and let the cluster move on without it.
    s.set(version("2.0", Some("never-ready"))).await;
    s.wait("start revision 2", |m| {
        outcome(m, 2) == Some(Outcome::Progressing)
    })
    .await;
    s.operators[0].kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.operators[0].restart();
    let m = s
        .wait("roll back revision 2 after a restart", rolled_back(2))
        .await;
    assert_eq!(revisions(&m), (Some(1), Some(1), Some(2)));
    let numbers: Vec<i64> = m
        .status
        .as_ref()
        .unwrap()
        .history
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(numbers, vec![1, 2], "no duplicates or gaps");

    // And a good version whose rollout the kill interrupts at whatever point
    // it had reached (a good rollout takes about a second here, too short to
    // aim at) finishes after the restart.
    s.set(version("3.0", None)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.operators[0].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.operators[0].restart();
    s.wait("make revision 3 stable after a restart", healthy_at(3))
        .await;
}
