//! Canary releases end to end, replica-weighted (no traffic router): the
//! canary Deployment's pods follow the steps behind the one Service, the
//! real Prometheus scrapes a test exporter whose per-version error ratios
//! each test sets, and relative bounds compare canary and stable over the
//! same window. Setup: tests/support/gates.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use model_operator::api::{CanaryStatus, ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};
use support::gates::*;
use support::*;

fn canary(m: &ModelDeployment) -> Option<&CanaryStatus> {
    m.status.as_ref()?.canary.as_ref()
}

fn at_step(m: &ModelDeployment, revision: i64, index: i32) -> bool {
    canary(m).is_some_and(|c| c.revision == revision && c.step_index == index)
}

/// Steps that hold every weight until `kubectl model promote`, so a test
/// can look at each.
fn held_steps() -> Value {
    json!([
        {"setWeight": 25}, {"pause": {}},
        {"setWeight": 50}, {"pause": {}},
    ])
}

/// Creates `m` as a canary of `replicas` with these steps and analysis
/// (and `extra` spec fields), and waits until 1.0 is promoted.
async fn create_promoted(s: &Setup, replicas: i32, steps: Value, analysis: Value, extra: Value) {
    let mut spec = json!({
        "model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": replicas,
        "rollout": {"strategy": "Canary", "canary": {"steps": steps}, "analysis": analysis},
    });
    merge(&mut spec, extra);
    s.create(spec).await;
    s.wait("promote 1.0", |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;
}

/// The canary and stable Deployments' (revision, spec.replicas).
async fn deployments(s: &Setup) -> (Option<(i64, i32)>, Option<(i64, i32)>) {
    let get = |name: &'static str| async move {
        s.deployments.get_opt(name).await.unwrap().map(|d| {
            (
                model_operator::resources::revision_of(&d).unwrap_or_default(),
                d.spec.and_then(|s| s.replicas).unwrap_or_default(),
            )
        })
    };
    (get("m").await, get("m-canary").await)
}

async fn wait_replicas(s: &Setup, what: &str, name: &str, revision: i64, replicas: i32) {
    wait_for(&s.deployments, name, what, TIMEOUT, |d: &Deployment| {
        model_operator::resources::revision_of(d) == Some(revision)
            && d.spec.as_ref().and_then(|s| s.replicas) == Some(replicas)
    })
    .await;
}

/// Ready endpoints of the Service `m`, counted by the revision of their pod.
async fn endpoints_by_revision(s: &Setup) -> BTreeMap<String, usize> {
    let slices = Api::<EndpointSlice>::namespaced(s.client.clone(), &s.ns.name)
        .list(&ListParams::default().labels("kubernetes.io/service-name=m"))
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(s.client.clone(), &s.ns.name);
    let mut counts = BTreeMap::new();
    for endpoint in slices
        .items
        .iter()
        .flat_map(|e| e.endpoints.iter().flatten())
    {
        let ready = endpoint
            .conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(false);
        let Some(pod) = endpoint.target_ref.as_ref().and_then(|r| r.name.clone()) else {
            continue;
        };
        if !ready {
            continue;
        }
        let Some(pod) = pods.get_opt(&pod).await.unwrap() else {
            continue;
        };
        let revision = pod
            .metadata
            .labels
            .unwrap_or_default()
            .get("mlops.dev/revision")
            .cloned()
            .unwrap_or_default();
        *counts.entry(revision).or_default() += 1;
    }
    counts
}

async fn wait_endpoints(s: &Setup, expected: &[(&str, usize)]) {
    let expected: BTreeMap<String, usize> =
        expected.iter().map(|(r, n)| (r.to_string(), *n)).collect();
    let what = format!("the Service's ready endpoints by revision are {expected:?}");
    eventually(&what, TIMEOUT, || async {
        let got = endpoints_by_revision(s).await;
        if got == expected { Ok(()) } else { Err(got) }
    })
    .await;
}

#[tokio::test]
async fn a_replica_weighted_canary_follows_its_steps_and_is_promoted() {
    let s = setup("canary-steps").await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    create_promoted(
        &s,
        4,
        held_steps(),
        analysis(json!({}), 0.05, Some(20.0)),
        json!({}),
    )
    .await;

    s.set_version("2.0").await;
    // Step 2/4 (a pause without duration) holds 25%: ceil(25% of 4) = 1
    // canary pod next to the 4 stable ones, both behind the Service.
    let m = s
        .wait("hold at the first pause", |m| {
            at_step(m, 2, 1) && canary(m).is_some_and(|c| c.waiting_for_promotion)
        })
        .await;
    let status = m.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(Phase::Progressing));
    assert_eq!(canary(&m).unwrap().weight, 25);
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason, "CanaryPaused");
    assert!(
        progressing
            .message
            .contains("step 2/4: 25% on revision 2, waiting for promotion"),
        "{}",
        progressing.message
    );
    assert_eq!(deployments(&s).await, (Some((1, 4)), Some((2, 1))));
    wait_endpoints(&s, &[("1", 4), ("2", 1)]).await;
    let shown =
        String::from_utf8_lossy(&kubectl_model(&s.ns.name, &["status", "m"]).stdout).to_string();
    assert!(
        shown.contains("> 2   pause (until kubectl model promote)"),
        "{shown}"
    );

    kubectl_model(&s.ns.name, &["promote", "m"]);
    s.wait("hold at the second pause", |m| at_step(m, 2, 3))
        .await;
    wait_replicas(&s, "canary at 50%", "m-canary", 2, 2).await;
    wait_endpoints(&s, &[("1", 4), ("2", 2)]).await;
    assert_eq!(deployments(&s).await.0, Some((1, 4)), "stable untouched");

    kubectl_model(&s.ns.name, &["promote", "m"]);
    let m = s
        .wait("promote 2.0", |m| {
            stable(m) == Some(2) && phase(m) == Some(Phase::Healthy)
        })
        .await;
    assert_eq!(outcome(&m, 2), Some(Outcome::Stable));
    assert_eq!(outcome(&m, 1), Some(Outcome::Superseded));
    assert!(canary(&m).is_none(), "no canary once promoted");
    handed_over(&s, 4).await;
}

/// After a promotion one Deployment serves: the stable one runs revision 2
/// on `replicas` pods, the very pods the canary ran (their ReplicaSet is
/// the canary's, which the stable Deployment adopted): none was created
/// for the promotion. The canary Deployment is gone.
async fn handed_over(s: &Setup, replicas: i32) {
    wait_gone(&s.deployments, "m-canary", TIMEOUT).await;
    wait_replicas(s, "the stable Deployment on revision 2", "m", 2, replicas).await;
    wait_endpoints(s, &[("2", usize::try_from(replicas).unwrap())]).await;
    let pods = Api::<Pod>::namespaced(s.client.clone(), &s.ns.name)
        .list(&ListParams::default().labels("mlops.dev/revision=2"))
        .await
        .unwrap();
    let owners: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .flat_map(|p| p.metadata.owner_references.iter().flatten())
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(
        owners.len(),
        usize::try_from(replicas).unwrap(),
        "{owners:?}"
    );
    assert!(
        owners.iter().all(|o| o.starts_with("m-canary-")),
        "every pod of revision 2 is one the canary created: {owners:?}"
    );
}

#[tokio::test]
async fn a_regression_at_step_2_aborts_the_canary_and_equal_values_pass() {
    let s = setup("canary-abort").await;
    // Relative bound only (max is far away): the canary's value is compared
    // with the stable's, both queried in the same round.
    s.error_rates(&[("1.0", 0.10), ("2.0", 0.10)]);
    s.scraped("2.0", Some(0.10)).await;
    create_promoted(
        &s,
        4,
        json!([{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]),
        analysis(json!({}), 0.9, Some(20.0)),
        json!({}),
    )
    .await;
    let generation = s.mds.get("m").await.unwrap().metadata.generation;

    s.set_version("2.0").await;
    // Equal to the stable value: passes, so the canary moves past step 1.
    let m = s
        .wait("pass step 1 on equal values", |m| {
            canary(m).is_some_and(|c| c.revision == 2 && c.step_index >= 1)
        })
        .await;
    let generation_now = m.metadata.generation;
    let check = m
        .status
        .as_ref()
        .unwrap()
        .analysis
        .as_ref()
        .unwrap()
        .metrics[0]
        .clone();
    assert_eq!(check.baseline, Some(0.10), "compared with the stable value");

    // 30% worse than the stable value, both in the same window: fails.
    s.error_rates(&[("1.0", 0.10), ("2.0", 0.13)]);
    let m = s
        .wait("roll 2.0 back", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    let status = m.status.as_ref().unwrap();
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "AnalysisFailed");
    assert!(
        entry.message.contains("0.13")
            && entry.message.contains("baseline 0.1 +20%")
            && entry.message.contains("(canary at step "),
        "{}",
        entry.message
    );
    assert_eq!(status.phase, Some(Phase::RolledBack));
    assert!(canary(&m).is_none());
    assert_eq!(m.metadata.generation, generation_now, "spec never written");
    assert_eq!(generation_now.map(|g| g - 1), generation);
    wait_replicas(&s, "canary scaled to 0", "m-canary", 2, 0).await;
    assert_eq!(deployments(&s).await.0, Some((1, 4)), "stable untouched");
    wait_endpoints(&s, &[("1", 4)]).await;
    let events = s.events().await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "RolledBack" && note.contains("error-rate")),
        "{events:#?}"
    );

    // No retry loop: several more intervals later, still rolled back, the
    // canary still at 0, and one RolloutStarted event only.
    s.error_rates(&[("1.0", 0.10), ("2.0", 0.10)]);
    s.scraped("2.0", Some(0.10)).await;
    let m = s.mds.get("m").await.unwrap();
    assert_eq!(outcome(&m, 2), Some(Outcome::RolledBack));
    assert_eq!(deployments(&s).await, (Some((1, 4)), Some((2, 0))));
    let started = s
        .events()
        .await
        .iter()
        .filter(|(reason, _)| reason == "RolloutStarted")
        .count();
    assert_eq!(started, 1, "the failed canary is not started again");
}

#[tokio::test]
async fn pause_promote_full_abort_and_a_killed_operator_resumes_at_its_step() {
    let mut s = setup("canary-manual").await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    create_promoted(
        &s,
        2,
        held_steps(),
        analysis(json!({}), 0.05, None),
        json!({}),
    )
    .await;
    s.set_version("2.0").await;
    let before = s
        .wait("hold at the first pause", |m| at_step(m, 2, 1))
        .await;
    let started_at = canary(&before).unwrap().step_started_at.clone();

    // kill -9 mid-step: the new process resumes at the same step, with the
    // same start, and the canary keeps its pod.
    s.operators[0].kill();
    s.operators[0].restart();
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.02)]);
    s.scraped("2.0", Some(0.02)).await;
    let after = s
        .wait("a check by the new process", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.analysis.as_ref())
                .is_some_and(|a| a.metrics.iter().any(|c| c.value == Some(0.02)))
        })
        .await;
    assert!(at_step(&after, 2, 1), "{:?}", canary(&after));
    assert_eq!(canary(&after).unwrap().step_started_at, started_at);
    assert_eq!(deployments(&s).await, (Some((1, 2)), Some((2, 1))));

    // Abort by hand: rolled back like a failed gate.
    kubectl_model(&s.ns.name, &["abort", "m"]);
    let m = s
        .wait("abort 2.0", |m| outcome(m, 2) == Some(Outcome::RolledBack))
        .await;
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "Aborted");
    assert!(entry.message.contains("step 2/4"), "{}", entry.message);
    wait_replicas(&s, "canary scaled to 0", "m-canary", 2, 0).await;

    // Retry starts the canary over at step 1; promote --full skips the rest.
    kubectl_model(&s.ns.name, &["retry", "m"]);
    s.wait("canary again", |m| at_step(m, 2, 1)).await;
    kubectl_model(&s.ns.name, &["promote", "m", "--full"]);
    s.wait("promote 2.0", |m| {
        stable(m) == Some(2) && phase(m) == Some(Phase::Healthy)
    })
    .await;
    handed_over(&s, 2).await;
}

#[tokio::test]
async fn with_autoscaling_the_stable_replicas_stay_the_hpas() {
    let s = setup("canary-hpa").await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    create_promoted(
        &s,
        1,
        held_steps(),
        analysis(json!({}), 0.05, None),
        json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 10}}),
    )
    .await;
    // Scale the stable Deployment as the HorizontalPodAutoscaler would.
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    s.deployments
        .patch_scale("m", &PatchParams::default(), &Patch::Merge(scale(4)))
        .await
        .unwrap();
    wait_replicas(&s, "the HPA's 4", "m", 1, 4).await;

    s.set_version("2.0").await;
    s.wait("hold at the first pause", |m| at_step(m, 2, 1))
        .await;
    wait_replicas(&s, "25% of 4", "m-canary", 2, 1).await;

    // The HPA scales the stable Deployment up: the canary follows, and the
    // operator leaves the stable Deployment's replicas alone.
    s.deployments
        .patch_scale("m", &PatchParams::default(), &Patch::Merge(scale(8)))
        .await
        .unwrap();
    wait_replicas(&s, "25% of 8", "m-canary", 2, 2).await;
    let stable = s.deployments.get("m").await.unwrap();
    assert_eq!(stable.spec.as_ref().unwrap().replicas, Some(8));
    let owns_replicas = stable
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .filter(|f| f.manager.as_deref() == Some("model-operator"))
        .any(|f| {
            f.fields_v1
                .as_ref()
                .is_some_and(|v| v.0.pointer("/f:spec/f:replicas").is_some())
        });
    assert!(
        !owns_replicas,
        "the operator must not own the HPA's replicas"
    );
}

#[tokio::test]
async fn the_canary_example_is_accepted_by_the_api_server() {
    assert_example_accepted("canary-example", "config/examples/canary.yaml").await;
}
