//! The local control plane does what a real cluster does: Deployments roll
//! out, progress deadlines fire, the simulated pod behaviours show, garbage
//! collection and namespace deletion complete, and the local Prometheus
//! scrapes what a test registers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::*;

fn deployment(name: &str, replicas: i32, simulate: Option<&str>, deadline: i32) -> Deployment {
    let mut labels = json!({"app": name});
    if let Some(behaviour) = simulate {
        labels["mlops.dev/simulate"] = json!(behaviour);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": deadline,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "registry.example/server:1"}]}
            }
        }
    }))
    .expect("deployment object")
}

async fn create(client: &Client, ns: &str, d: Deployment) -> Api<Deployment> {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    api
}

async fn pods(client: &Client, ns: &str, app: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
}

/// Waits until every pod of `app` has a container in one of `reasons`.
async fn wait_for_container_state(
    client: &Client,
    ns: &str,
    app: &str,
    reasons: &[&str],
) -> Vec<Pod> {
    let what = format!("every pod of {app} waits in one of {reasons:?}");
    eventually(&what, Duration::from_secs(60), || async {
        let pods = pods(client, ns, app).await;
        let waiting_reason = |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone())
        };
        let reached = !pods.is_empty()
            && pods
                .iter()
                .all(|p| waiting_reason(p).is_some_and(|r| reasons.contains(&r.as_str())));
        if reached {
            Ok(pods)
        } else {
            Err(pods
                .iter()
                .map(|p| (p.metadata.name.clone(), p.status.clone()))
                .collect::<Vec<_>>())
        }
    })
    .await
}

fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

#[tokio::test]
async fn deployment_of_three_becomes_available() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "cp-available").await;
    let api = create(&client, &ns.name, deployment("web", 3, None, 60)).await;
    let d = wait_for(
        &api,
        "web",
        "have 3 available replicas",
        Duration::from_secs(60),
        |d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(3),
    )
    .await;
    assert_eq!(d.status.and_then(|s| s.ready_replicas), Some(3));
}

#[tokio::test]
async fn never_ready_pods_hit_the_progress_deadline() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "cp-never-ready").await;
    let api = create(
        &client,
        &ns.name,
        deployment("stuck", 2, Some("never-ready"), 5),
    )
    .await;
    let d = wait_for(
        &api,
        "stuck",
        "report ProgressDeadlineExceeded",
        Duration::from_secs(90),
        |d| {
            d.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "Progressing"
                            && c.status == "False"
                            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                    })
                })
        },
    )
    .await;
    assert_eq!(
        d.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
        0
    );
    for p in pods(&client, &ns.name, "stuck").await {
        let status = p.status.expect("pod status");
        assert_eq!(
            status.phase.as_deref(),
            Some("Running"),
            "never-ready pods run"
        );
        let ready = status
            .conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready");
        assert_eq!(ready.map(|c| c.status), Some("False".to_string()));
    }
}

#[tokio::test]
async fn crash_loop_label_gives_crash_loop_back_off_with_rising_restarts() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "cp-crash").await;
    create(
        &client,
        &ns.name,
        deployment("crashy", 1, Some("crash-loop"), 60),
    )
    .await;
    let first = wait_for_container_state(&client, &ns.name, "crashy", &["CrashLoopBackOff"]).await;
    let before = restart_count(&first[0]);
    let what = format!("restartCount grows past {before}");
    eventually(&what, Duration::from_secs(60), || async {
        let now = pods(&client, &ns.name, "crashy").await;
        now.iter().any(|p| restart_count(p) > before)
    })
    .await;
}

#[tokio::test]
async fn image_pull_label_gives_image_pull_errors() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "cp-pull").await;
    create(
        &client,
        &ns.name,
        deployment("pully", 2, Some("image-pull-error"), 60),
    )
    .await;
    let pods = wait_for_container_state(
        &client,
        &ns.name,
        "pully",
        &["ErrImagePull", "ImagePullBackOff"],
    )
    .await;
    assert_eq!(pods.len(), 2);
}

#[tokio::test]
async fn deleting_a_deployment_collects_its_replicasets_and_pods() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "cp-gc").await;
    let api = create(&client, &ns.name, deployment("gc", 2, None, 60)).await;
    wait_for(
        &api,
        "gc",
        "have 2 available replicas",
        Duration::from_secs(60),
        |d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(2),
    )
    .await;
    delete(&api, "gc").await;
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), &ns.name);
    let what = "the ReplicaSets and pods are collected";
    eventually(what, Duration::from_secs(60), || async {
        let sets = rs
            .list(&ListParams::default().labels("app=gc"))
            .await
            .expect("list")
            .items
            .len();
        let left = pods(&client, &ns.name, "gc").await.len();
        if sets == 0 && left == 0 {
            Ok(())
        } else {
            Err(format!("{sets} ReplicaSets and {left} pods left"))
        }
    })
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_completes() {
    let client = client().await;
    let name = {
        let ns = TestNamespace::new(&client, "cp-nsdel").await;
        let api = create(&client, &ns.name, deployment("doomed", 2, None, 60)).await;
        wait_for(
            &api,
            "doomed",
            "have 2 available replicas",
            Duration::from_secs(60),
            |d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(2),
        )
        .await;
        ns.name.clone()
        // dropped here: deletion requested
    };
    wait_gone(
        &Api::<Namespace>::all(client),
        &name,
        Duration::from_secs(90),
    )
    .await;
}

#[tokio::test]
async fn prometheus_answers_and_scrapes_a_target_a_test_adds() {
    let exporter = Exporter::start("e2e_probe_value 42\n").await;
    let job = format!("e2e-probe-{}", exporter.port);
    let _target = ScrapeTarget::add(&job, exporter.port, json!({}));
    let query = format!("e2e_probe_value{{job=\"{job}\"}}");
    prometheus_sees(&query, Some(42.0), Duration::from_secs(60)).await;

    // New values flow through: the scrape is live, not a one-off.
    exporter.set("e2e_probe_value 7\n");
    prometheus_sees(&query, Some(7.0), Duration::from_secs(60)).await;
}
