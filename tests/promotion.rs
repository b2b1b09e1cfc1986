//! Promotion without a restart: the pods that ran the canary are the
//! stable pods afterwards (same uids, no pod of the promoted revision
//! created by the promotion), and a promotion interrupted by kill -9 at any
//! point ends with one Deployment serving the new revision at full count
//! (`rollout::promotion`, docs/canary.md "Promotion").
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use model_operator::api::{ModelDeployment, Phase};
use serde_json::{Value, json};
use support::pod_watch::watch_pods;
use support::rng::Rng;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn canary_model(replicas: i32, steps: Value) -> Value {
    json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": replicas,
        "rollout": {"strategy": "Canary", "canary": {"steps": steps}}})
}

fn promoted(revision: i64) -> impl Fn(&ModelDeployment) -> bool {
    move |m| {
        stable(m) == Some(revision)
            && phase(m) == Some(Phase::Healthy)
            && m.status.as_ref().and_then(|s| s.current_revision) == Some(revision)
    }
}

/// The live pods of `revision`: uid → the ReplicaSet that owns it.
async fn pods_of(s: &Setup, revision: i64) -> Vec<(String, String)> {
    s.live_pods(revision)
        .await
        .into_iter()
        .map(|p| {
            let owner = p
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .next()
                .unwrap_or_default();
            (p.metadata.uid.unwrap_or_default(), owner)
        })
        .collect()
}

/// One Deployment serves `revision` on `replicas` pods, all of them the
/// canary's, and no other pod of the model is left.
async fn served_by_the_stable_deployment_alone(s: &Setup, revision: i64, replicas: usize) {
    wait_gone(&s.deployments, "m-canary", TIMEOUT).await;
    eventually(
        "the stable Deployment runs the revision on every pod, nothing else",
        TIMEOUT,
        || async {
            let d = s.deployments.get("m").await.ok()?;
            let status = d.status.clone()?;
            let all = Api::<Pod>::namespaced(s.client.clone(), &s.ns.name)
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            (model_operator::resources::revision_of(&d) == Some(revision)
                && d.spec.as_ref()?.paused != Some(true)
                && status.observed_generation == d.metadata.generation
                && status.available_replicas == Some(i32::try_from(replicas).ok()?)
                && status.updated_replicas == status.available_replicas
                && all == replicas)
                .then_some(())
        },
    )
    .await;
    let pods = pods_of(s, revision).await;
    assert_eq!(pods.len(), replicas, "{pods:?}");
    assert!(
        pods.iter().all(|(_, owner)| owner.starts_with("m-canary-")),
        "every pod of revision {revision} is one the canary started: {pods:?}"
    );
}

#[tokio::test]
async fn the_canarys_pods_become_the_stable_pods() {
    let s = Setup::new("promote-keep").await;
    s.create(canary_model(
        3,
        json!([{"setWeight": 50}, {"setWeight": 100}, {"pause": {}}]),
    ))
    .await;
    s.wait("promote revision 1", promoted(1)).await;
    s.set_version("2").await;
    s.wait("hold revision 2 at 100%, all 3 pods ready", |m| {
        m.status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| c.revision == 2 && c.waiting_for_promotion)
    })
    .await;
    let before = eventually("3 canary pods of revision 2", TIMEOUT, || async {
        let pods = pods_of(&s, 2).await;
        (pods.len() == 3).then_some(pods)
    })
    .await;

    let (log, watch) = watch_pods(Api::namespaced(s.client.clone(), &s.ns.name)).await;
    kubectl_model(&s.ns.name, &["promote", "m"]);
    s.wait("promote revision 2", promoted(2)).await;
    served_by_the_stable_deployment_alone(&s, 2, 3).await;
    watch.abort();

    let uids =
        |pods: &[(String, String)]| pods.iter().map(|(u, _)| u.clone()).collect::<BTreeSet<_>>();
    assert_eq!(uids(&pods_of(&s, 2).await), uids(&before), "the same pods");
    let log = log.lock().unwrap();
    assert!(
        log.created.is_empty(),
        "the promotion created pods: {:?}",
        log.created
    );
    assert!(
        log.most_alive <= 6,
        "3 stable and 3 canary pods at most: {log:?}"
    );
}

#[tokio::test]
async fn ten_promotions_end_right_when_the_operator_is_killed_at_random() {
    let (mut rng, seed) = Rng::from_env("promotion");
    let mut s = Setup::new("promote-kill").await;
    s.create(canary_model(2, json!([{"setWeight": 100}]))).await;
    s.wait("promote revision 1", promoted(1)).await;

    for revision in 2..=11_i64 {
        let (log, watch) = watch_pods(Api::namespaced(s.client.clone(), &s.ns.name)).await;
        s.set_version(&revision.to_string()).await;
        // Anywhere from the canary's start to the end of the handover.
        tokio::time::sleep(rng.millis(0, 4000)).await;
        s.operators[0].kill();
        tokio::time::sleep(rng.millis(0, 1500)).await;
        s.operators[0].restart();
        s.wait(
            &format!("promote revision {revision} (FAULT_SEED={seed})"),
            promoted(revision),
        )
        .await;
        served_by_the_stable_deployment_alone(&s, revision, 2).await;
        watch.abort();
        let log = log.lock().unwrap();
        let of_revision = log
            .created
            .iter()
            .filter(|(_, r)| *r == revision.to_string())
            .count();
        assert_eq!(
            of_revision, 2,
            "revision {revision}: only the canary's 2 pods were created (FAULT_SEED={seed}): {log:?}"
        );
        assert!(
            log.most_alive <= 4,
            "revision {revision}: never more than both sides' 2 pods (FAULT_SEED={seed}): {log:?}"
        );
    }
}
