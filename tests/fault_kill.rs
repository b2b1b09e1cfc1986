//! Fault test: the operator is killed with SIGKILL at random moments while 20
//! rollouts (good and bad versions, in four ModelDeployments at once) run.
//! Every rollout must still end in the right state, with a history that has
//! no duplicate and no missing revision.
//!
//! The kill schedule and the version mix come from a seeded generator; the
//! seed is printed, and `FAULT_SEED=<seed>` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::json;
use support::rng::Rng;
use support::*;

/// ModelDeployments rolled out in parallel, and rollouts each (after the
/// first, always good, revision): 4 × 5 = 20 rollouts.
const MODELS: usize = 4;
const ROLLOUTS_EACH: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(150);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Version {
    Good,
    /// Caught from the pods as soon as one crash-loops.
    CrashLoop,
    /// Caught only by the progress deadline.
    NeverReady,
}

impl Version {
    fn simulate(self) -> Option<&'static str> {
        match self {
            Version::Good => None,
            Version::CrashLoop => Some("crash-loop"),
            Version::NeverReady => Some("never-ready"),
        }
    }
}

/// What the history must say about each revision once all rollouts ended,
/// and which revision must be stable: revision 1 is good, revision r + 1 is
/// `plan[r - 1]`.
fn expected(plan: &[Version]) -> (BTreeMap<i64, Outcome>, i64) {
    let mut outcomes = BTreeMap::from([(1, Outcome::Stable)]);
    let mut stable = 1;
    for (i, v) in plan.iter().enumerate() {
        let revision = i as i64 + 2;
        if *v == Version::Good {
            outcomes.insert(stable, Outcome::Superseded);
            outcomes.insert(revision, Outcome::Stable);
            stable = revision;
        } else {
            outcomes.insert(revision, Outcome::RolledBack);
        }
    }
    (outcomes, stable)
}

/// The rollout of `revision` is over, as `version` must end.
fn ended(m: &ModelDeployment, revision: i64, version: Version) -> bool {
    let Some(status) = m.status.as_ref() else {
        return false;
    };
    let settled = status.observed_generation == m.metadata.generation;
    let (phase, outcome) = match version {
        Version::Good => (Phase::Healthy, Outcome::Stable),
        _ => (Phase::RolledBack, Outcome::RolledBack),
    };
    settled
        && status.phase == Some(phase)
        && status.update_revision == Some(revision)
        && support::outcome(m, revision) == Some(outcome)
}

async fn roll_out(mds: Api<ModelDeployment>, name: String, plan: Vec<Version>, seed: u64) {
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
        "spec": {"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1,
                 "revisionHistoryLimit": 20,
                 "rollout": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 10}},
    }))
    .expect("manifest");
    mds.create(&PostParams::default(), &md)
        .await
        .expect("create");
    let what = |r: i64, v: Version| format!("end revision {r} as {v:?} (FAULT_SEED={seed})");
    wait_for(&mds, &name, &what(1, Version::Good), TIMEOUT, |m| {
        ended(m, 1, Version::Good)
    })
    .await;
    for (i, v) in plan.iter().enumerate() {
        let revision = i as i64 + 2;
        let patch = json!({"spec": {"model": {"version": revision.to_string()},
            "podMetadata": {"labels": {"mlops.dev/simulate": v.simulate()}}}});
        mds.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch");
        wait_for(&mds, &name, &what(revision, *v), TIMEOUT, |m| {
            ended(m, revision, *v)
        })
        .await;
        eprintln!("{name}: revision {revision} ({v:?}) ended as expected");
    }

    let m = mds.get(&name).await.expect("get");
    let (outcomes, stable) = expected(&plan);
    let status = m.status.clone().unwrap_or_default();
    let numbers: Vec<i64> = status.history.iter().map(|e| e.revision).collect();
    let want: Vec<i64> = outcomes.keys().copied().collect();
    assert_eq!(
        numbers, want,
        "{name}: no duplicates or gaps (FAULT_SEED={seed})"
    );
    for (revision, outcome) in outcomes {
        assert_eq!(
            support::outcome(&m, revision),
            Some(outcome),
            "{name}: revision {revision} (FAULT_SEED={seed})"
        );
    }
    assert_eq!(
        (status.current_revision, status.stable_revision),
        (Some(stable), Some(stable)),
        "{name}: serving the last good revision (FAULT_SEED={seed})"
    );
}

#[tokio::test]
async fn rollouts_end_right_when_the_operator_is_killed_at_random() {
    let (mut rng, seed) = Rng::from_env("fault_kill");

    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "fault-kill").await;
    let mut operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);

    let plans: Vec<Vec<Version>> = (0..MODELS)
        .map(|_| {
            (0..ROLLOUTS_EACH)
                .map(|_| match rng.next() % 6 {
                    0..=2 => Version::Good,
                    3 | 4 => Version::CrashLoop,
                    _ => Version::NeverReady,
                })
                .collect()
        })
        .collect();
    eprintln!("fault_kill: plans {plans:?}");

    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU32::new(0));
    // The killer: SIGKILL at a random moment, a random pause with no operator
    // at all, a fresh process; again until every rollout has ended.
    let killer = {
        let (done, kills) = (done.clone(), kills.clone());
        let mut rng = Rng(rng.next());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(rng.millis(200, 1500)).await;
                if done.load(Ordering::SeqCst) {
                    break;
                }
                operator.kill();
                kills.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(rng.millis(100, 1500)).await;
                operator.restart();
            }
            operator
        })
    };

    let rollouts = plans
        .into_iter()
        .enumerate()
        .map(|(i, plan)| roll_out(mds.clone(), format!("m{i}"), plan, seed));
    // Every rollout runs to its end even if one fails, so a failure's
    // message names the seed and the others still clean up.
    let results = futures::future::join_all(rollouts.map(tokio::spawn)).await;
    done.store(true, Ordering::SeqCst);
    let operator = killer.await.expect("killer task");
    eprintln!(
        "fault_kill: {} rollouts, operator killed {} times (FAULT_SEED={seed})",
        MODELS * ROLLOUTS_EACH,
        kills.load(Ordering::SeqCst)
    );
    for r in results {
        if let Err(e) = r {
            panic!(
                "{e} (FAULT_SEED={seed}); operator log: {}",
                operator.log.display()
            );
        }
    }
}

#[test]
fn expected_outcomes_follow_the_plan() {
    use Version::*;
    let (outcomes, stable) = expected(&[CrashLoop, Good, NeverReady]);
    assert_eq!(stable, 3);
    assert_eq!(
        outcomes.into_iter().collect::<Vec<_>>(),
        [
            (1, Outcome::Superseded),
            (2, Outcome::RolledBack),
            (3, Outcome::Stable),
            (4, Outcome::RolledBack),
        ]
    );
}
