//! The warm rollback window (`canary.warmRollbackWindow`, issue 26): after
//! a promotion `<name>-previous` keeps the previous revision's pods, with no
//! Service sending them traffic; a post-promotion rollback inside the
//! window serves the previous revision again with zero pods created (the
//! same pods, by uid); after the window they are gone. Real Prometheus and
//! a test exporter drive the guard (tests/support/gates.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};
use support::gates::{Gates, analysis, setup};
use support::pod_watch::watch_pods;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn model(window: &str) -> Value {
    json!({
        "model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2,
        "rollout": {
            "strategy": "Canary",
            "canary": {"steps": [{"setWeight": 100}], "warmRollbackWindow": window},
            "analysis": analysis(json!({"postPromotion": {"action": "Rollback"}}), 0.05, None),
        },
    })
}

fn promoted(revision: i64) -> impl Fn(&ModelDeployment) -> bool {
    move |m| {
        stable(m) == Some(revision)
            && phase(m) == Some(Phase::Healthy)
            && m.status.as_ref().and_then(|s| s.current_revision) == Some(revision)
    }
}

/// Uids of the live pods of `revision`.
async fn uids(s: &Setup, revision: i64) -> BTreeSet<String> {
    s.live_pods(revision)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect()
}

/// Revision 2 promoted over revision 1, whose 2 pods (`kept`) are held by
/// `m-previous`, out of the model Service's selection.
async fn promoted_with_revision_1_kept(s: &Setup) -> BTreeSet<String> {
    s.create(model("10m")).await;
    s.wait("promote 1.0", promoted(1)).await;
    let kept = eventually("2 pods of revision 1", TIMEOUT, || async {
        let pods = uids(s, 1).await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    s.set_version("2.0").await;
    s.wait("promote 2.0", promoted(2)).await;
    wait_for(
        &s.deployments,
        "m-previous",
        "revision 1 kept warm on 2 pods",
        TIMEOUT,
        |d| {
            model_operator::resources::revision_of(d) == Some(1)
                && d.spec.as_ref().and_then(|s| s.paused) != Some(true)
                && d.status.as_ref().and_then(|s| s.available_replicas) == Some(2)
        },
    )
    .await;
    wait_for(&s.deployments, "m", "revision 2 on 2 pods", TIMEOUT, |d| {
        model_operator::resources::revision_of(d) == Some(2)
            && d.spec.as_ref().and_then(|s| s.paused) != Some(true)
            && d.status.as_ref().and_then(|s| s.available_replicas) == Some(2)
    })
    .await;
    assert_eq!(uids(s, 1).await, kept, "the same pods of revision 1");
    let service = Api::<Service>::namespaced(s.client.clone(), &s.ns.name)
        .get("m")
        .await
        .unwrap();
    let selector = service.spec.unwrap().selector.unwrap();
    assert_eq!(
        selector.get("mlops.dev/revision").map(String::as_str),
        Some("2"),
        "the kept pods get no traffic: {selector:?}"
    );
    kept
}

#[tokio::test]
async fn a_guard_rollback_inside_the_window_serves_the_kept_pods() {
    let s = setup("warm-rollback").await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    let kept = promoted_with_revision_1_kept(&s).await;

    let (log, watch) = watch_pods(Api::namespaced(s.client.clone(), &s.ns.name)).await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.2)]);
    let m = s
        .wait("roll the breaching 2.0 back", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    assert_eq!(history_entry(&m, 2).unwrap().reason, "PostPromotionBreach");
    wait_gone(&s.deployments, "m-previous", TIMEOUT).await;
    wait_for(&s.deployments, "m", "revision 1 on 2 pods", TIMEOUT, |d| {
        model_operator::resources::revision_of(d) == Some(1)
            && d.spec.as_ref().and_then(|s| s.paused) != Some(true)
            && d.status.as_ref().and_then(|s| s.available_replicas) == Some(2)
            && d.status.as_ref().and_then(|s| s.replicas) == Some(2)
    })
    .await;
    watch.abort();
    assert_eq!(uids(&s, 1).await, kept, "the kept pods serve revision 1");
    let log = log.lock().unwrap();
    assert!(
        log.created.is_empty(),
        "the rollback created pods: {:?}",
        log.created
    );
}

#[tokio::test]
async fn after_the_window_the_kept_pods_are_gone() {
    let s = setup("warm-window").await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    s.create(model("15s")).await;
    s.wait("promote 1.0", promoted(1)).await;
    s.set_version("2.0").await;
    eventually("revision 1 kept", TIMEOUT, || async {
        s.deployments.get_opt("m-previous").await.unwrap().is_some()
    })
    .await;
    s.wait("promote 2.0", promoted(2)).await;
    wait_gone(&s.deployments, "m-previous", TIMEOUT).await;
    eventually("no pod of revision 1 left", TIMEOUT, || async {
        uids(&s, 1).await.is_empty()
    })
    .await;
    let service = Api::<Service>::namespaced(s.client.clone(), &s.ns.name)
        .get("m")
        .await
        .unwrap();
    assert_eq!(
        service
            .spec
            .unwrap()
            .selector
            .unwrap()
            .get("mlops.dev/revision"),
        None,
        "the model Service selects every pod again"
    );
}
