//! `canary.dynamicStableScale` on a Gateway API route (issue 26): the
//! stable side shrinks as the canary's share grows, so 10 stable pods and
//! their canary never number more than 11 at any pod event, terminating
//! pods included (they still hold their GPUs); promotion then hands the
//! canary's pods over without a restart; and an abort at 50% brings the 10
//! stable pods back, Ready, before the route returns to 100/0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DynamicObject;
use kube::runtime::watcher;
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};
use support::gateway::{back_on_stable_at, install_gateway_api, routes, rule_weights, split_route};
use support::pod_watch::{Change, revision, watch_pod_events};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(180);
const REPLICAS: usize = 10;

fn model(steps: Value) -> Value {
    json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": REPLICAS,
    "rollout": {"strategy": "Canary", "canary": {
        "steps": steps,
        "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
        "dynamicStableScale": true,
    }}})
}

/// (stable, canary) weights of the route's rule.
fn weights(route: &DynamicObject) -> (i64, i64) {
    rule_weights(route, 0)
}

fn resource_version(meta: &kube::api::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the pod watch saw: the most pods at once (terminating ones
/// included), pods created by revision, and after each event its resource
/// version and the Ready pods of revision 1.
#[derive(Debug, Default)]
struct Seen {
    most: usize,
    most_at: Vec<String>,
    created: BTreeMap<String, usize>,
    stable_ready: Vec<(u64, usize)>,
}

async fn watch(s: &Setup) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    let task = watch_pod_events(
        Api::namespaced(s.client.clone(), &s.ns.name),
        move |pods, change| {
            let mut seen = log.lock().unwrap();
            if let Change::Applied { pod, new: true } = &change {
                *seen.created.entry(revision(pod)).or_default() += 1;
            }
            if pods.len() > seen.most {
                seen.most = pods.len();
                seen.most_at = pods
                    .values()
                    .map(|p| {
                        let gone = if p.metadata.deletion_timestamp.is_some() {
                            " (terminating)"
                        } else {
                            ""
                        };
                        format!("revision {}{gone}", revision(p))
                    })
                    .collect();
            }
            // A pod stops being Ready (deletion included) in an update, before
            // it is deleted: updates are where the count changes.
            if let Change::Applied { pod, .. } = change {
                let stable = pods
                    .values()
                    .filter(|p| revision(p) == "1" && ready(p))
                    .count();
                seen.stable_ready
                    .push((resource_version(&pod.metadata), stable));
            }
        },
    )
    .await;
    (seen, task)
}

/// Never more than one pod beyond the model's count, at any pod event.
fn assert_within_one_spare_pod(seen: &Seen) {
    assert!(
        seen.most <= REPLICAS + 1,
        "{} pods at once: {:?}",
        seen.most,
        seen.most_at
    );
}

fn canary_at(m: &ModelDeployment, revision: i64, step: i32) -> bool {
    m.status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .is_some_and(|c| c.revision == revision && c.step_index == step)
}

/// Model `m` on a route, revision 1 promoted, with these canary steps.
async fn serving_revision_1(prefix: &str, steps: Value) -> Setup {
    install_gateway_api();
    let s = Setup::new(prefix).await;
    split_route(&s.client, &s.ns.name).await;
    s.create(model(steps)).await;
    s.wait("promote revision 1", |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;
    s
}

async fn replicas(s: &Setup, name: &str) -> Option<i32> {
    s.deployments.get(name).await.ok()?.spec?.replicas
}

#[tokio::test]
async fn ten_stable_pods_and_their_canary_never_exceed_eleven_through_promotion() {
    let s = serving_revision_1(
        "dynamic-scale",
        json!([{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}]),
    )
    .await;
    let (seen, task) = watch(&s).await;
    s.set_version("2").await;
    s.wait("promote revision 2", |m| {
        stable(m) == Some(2)
            && phase(m) == Some(Phase::Healthy)
            && m.status.as_ref().and_then(|s| s.current_revision) == Some(2)
    })
    .await;
    wait_gone(&s.deployments, "m-canary", TIMEOUT).await;
    wait_for(
        &s.deployments,
        "m",
        "10 pods of revision 2, resumed",
        TIMEOUT,
        |d| {
            model_operator::resources::revision_of(d) == Some(2)
                && d.spec.as_ref().and_then(|s| s.paused) != Some(true)
                && d.status.as_ref().and_then(|s| s.available_replicas) == Some(10)
        },
    )
    .await;
    eventually("the route back on the stable Service", TIMEOUT, || async {
        weights(&routes(&s.client, &s.ns.name).get("r").await.unwrap()) == (100, 0)
    })
    .await;
    task.abort();
    let seen = seen.lock().unwrap();
    assert_within_one_spare_pod(&seen);
    assert_eq!(
        seen.created.get("2").copied(),
        Some(REPLICAS),
        "the canary's 10 pods and no other of revision 2: {:?}",
        seen.created
    );
    assert_eq!(
        seen.created.get("1"),
        None,
        "no stable pod restarted: {:?}",
        seen.created
    );
}

#[tokio::test]
async fn an_abort_at_50_brings_ten_stable_pods_back_before_the_route() {
    let s = serving_revision_1(
        "dynamic-abort",
        json!([{"setWeight": 10}, {"setWeight": 50}, {"pause": {}}]),
    )
    .await;
    let (seen, task) = watch(&s).await;
    s.set_version("2").await;
    s.wait("hold revision 2 at 50%", |m| canary_at(m, 2, 2))
        .await;
    eventually(
        "5 stable and 5 canary pods, the route at 50/50",
        TIMEOUT,
        || async {
            let route = weights(&routes(&s.client, &s.ns.name).get("r").await.ok()?);
            (route == (50, 50)
                && replicas(&s, "m").await == Some(5)
                && replicas(&s, "m-canary").await == Some(5))
            .then_some(())
        },
    )
    .await;

    // The route's writes, as they happen.
    let (route_log, route_watch) = {
        let log = Arc::new(Mutex::new(Vec::<(u64, (i64, i64))>::new()));
        let out = log.clone();
        let api = routes(&s.client, &s.ns.name);
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(r) | watcher::Event::InitApply(r) = event {
                    log.lock()
                        .unwrap()
                        .push((resource_version(&r.metadata), weights(&r)));
                }
            }
        });
        (out, task)
    };
    kubectl_model(&s.ns.name, &["abort", "m"]);
    let m = s
        .wait("roll revision 2 back", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    assert_eq!(history_entry(&m, 2).unwrap().reason, "Aborted");
    back_on_stable_at(&s, 0, TIMEOUT).await;
    wait_for(&s.deployments, "m", "10 stable pods", TIMEOUT, |d| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(10)
            && d.status.as_ref().and_then(|s| s.available_replicas) == Some(10)
    })
    .await;
    // Let the last pod events of the canary's pods arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    task.abort();
    route_watch.abort();

    let seen = seen.lock().unwrap();
    assert_within_one_spare_pod(&seen);
    // When the route went back to 100/0 (etcd orders the route's and the
    // pods' writes alike), 10 pods of revision 1 were Ready.
    let back = route_log
        .lock()
        .unwrap()
        .iter()
        .find(|(_, w)| *w == (100, 0))
        .copied()
        .expect("the route's write back to 100/0 was watched");
    let ready_then = seen
        .stable_ready
        .iter()
        .filter(|(at, _)| *at < back.0)
        .max_by_key(|(at, _)| *at)
        .map(|(_, n)| *n);
    assert_eq!(
        ready_then,
        Some(REPLICAS),
        "stable pods Ready when the route returned to 100/0 (at resource version {})",
        back.0
    );
}
