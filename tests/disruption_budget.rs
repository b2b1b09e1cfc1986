//! `spec.disruptionBudget` on the real control plane: the operator keeps a
//! PodDisruptionBudget over exactly the model's pods (the real disruption
//! controller counts them), restores it when deleted, follows spec changes
//! without a new revision, deletes it with the field, and never touches a
//! budget of the same name that is not its own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use model_operator::api::{ModelDeployment, Phase};
use model_operator::resources::revision_of;
use serde_json::{Value, json};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

fn healthy(m: &ModelDeployment) -> bool {
    settled(m) && phase(m) == Some(Phase::Healthy)
}

fn degraded_because(m: &ModelDeployment, reason: &str) -> bool {
    settled(m) && condition(m, "Degraded").is_some_and(|(s, r, _)| s == "True" && r == reason)
}

fn spec(budget: Value) -> Value {
    json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2,
        "disruptionBudget": budget})
}

fn min_available(p: &PodDisruptionBudget) -> Option<IntOrString> {
    p.spec.as_ref()?.min_available.clone()
}

/// What the disruption controller computed, once it has seen the budget's
/// latest generation: (expectedPods, desiredHealthy).
fn counted(p: &PodDisruptionBudget) -> Option<(i32, i32)> {
    let status = p.status.as_ref()?;
    if status.observed_generation != p.metadata.generation {
        return None;
    }
    Some((status.expected_pods?, status.desired_healthy?))
}

#[tokio::test]
async fn the_budget_covers_the_models_pods_and_follows_the_spec() {
    let s = Setup::new("pdb-life").await;
    let pdbs = Api::<PodDisruptionBudget>::namespaced(s.client.clone(), &s.ns.name);
    s.create(spec(json!({"minAvailable": 1}))).await;
    // Another model in the namespace, without a budget: none of its pods
    // may count towards m's.
    s.create_named(
        "other",
        json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 3}),
    )
    .await;
    let md = s
        .wait("be Healthy", |m| phase(m) == Some(Phase::Healthy))
        .await;
    s.wait_named("other", "be Healthy", healthy).await;
    let revision = revision_of(&s.deployments.get("m").await.unwrap());

    // Owned by m, selecting what its Service selects (its uid included).
    let pdb = wait_for(&pdbs, "m", "exist", TIMEOUT, |_| true).await;
    let owner = pdb.owner_references();
    assert!(
        owner.iter().any(|r| r.controller == Some(true)
            && r.kind == "ModelDeployment"
            && Some(&r.uid) == md.metadata.uid.as_ref()),
        "controller owner reference to m: {owner:?}"
    );
    let selector = pdb.spec.as_ref().unwrap().selector.clone().unwrap();
    let service = s.services.get("m").await.unwrap();
    assert_eq!(selector.match_labels, service.spec.unwrap().selector);
    assert_eq!(
        selector
            .match_labels
            .as_ref()
            .and_then(|l| l.get("mlops.dev/owner-uid")),
        md.metadata.uid.as_ref()
    );
    // The real disruption controller finds m's two pods and no other.
    wait_for(&pdbs, "m", "count m's 2 pods", TIMEOUT, |p| {
        counted(p) == Some((2, 1))
    })
    .await;

    // Converged, it costs no request: reconciles (woken by a touch, and by
    // the disruption controller's status writes) neither read nor write it.
    let port = s.operators[0].metrics_port();
    let before = operator_requests(port).await.unwrap();
    for i in 0..3 {
        let touch = json!({"metadata": {"annotations": {"test/touch": i.to_string()}}});
        s.mds
            .patch("m", &PatchParams::default(), &Patch::Merge(touch))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after = operator_requests(port).await.unwrap();
    let sent: Vec<_> = requests_between(&before, &after)
        .into_iter()
        .filter(|r| r.resource == "poddisruptionbudgets" && r.verb != "watch")
        .collect();
    assert!(
        sent.is_empty(),
        "requests about the converged budget: {sent:?}"
    );

    // Deleted by hand (kubectl delete): put back.
    let old_uid = pdb.metadata.uid.clone();
    delete(&pdbs, "m").await;
    wait_for(&pdbs, "m", "be recreated", TIMEOUT, |p| {
        p.metadata.uid != old_uid
    })
    .await;

    // A new minAvailable updates the budget, and is no new revision.
    s.set(json!({"disruptionBudget": {"minAvailable": 2}}))
        .await;
    wait_for(&pdbs, "m", "require 2 available pods", TIMEOUT, |p| {
        min_available(p) == Some(IntOrString::Int(2)) && counted(p) == Some((2, 2))
    })
    .await;
    let m = s.wait("be Healthy at the new generation", healthy).await;
    assert_eq!(
        revision_of(&s.deployments.get("m").await.unwrap()),
        revision,
        "the pod template's revision"
    );
    assert_eq!(revisions(&m).0, revision, "status' current revision");

    // Without the field the budget goes, and the event says why.
    s.set(json!({"disruptionBudget": null})).await;
    wait_gone(&pdbs, "m", TIMEOUT).await;
    eventually("a Deleted event names the budget", TIMEOUT, || async {
        s.events()
            .await
            .iter()
            .any(|(reason, note)| reason == "Deleted" && note.contains("PodDisruptionBudget"))
    })
    .await;
    s.wait("be Healthy without a budget", healthy).await;
}

#[tokio::test]
async fn a_budget_of_the_same_name_that_is_not_ours_is_left_alone() {
    let s = Setup::new("pdb-foreign").await;
    let pdbs = Api::<PodDisruptionBudget>::namespaced(s.client.clone(), &s.ns.name);
    // Another team's budget, copying our labels (so the operator's watch
    // sees it) but not owned by any ModelDeployment.
    let theirs: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "m", "labels": {
            "app.kubernetes.io/managed-by": "model-operator",
            "app.kubernetes.io/instance": "m"}},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"team": "b"}}},
    }))
    .unwrap();
    let theirs = pdbs.create(&PostParams::default(), &theirs).await.unwrap();

    s.create(spec(json!({"maxUnavailable": 1}))).await;
    let m = s
        .wait("be Degraded: NameConflict", |m| {
            degraded_because(m, "NameConflict")
        })
        .await;
    let (_, _, message) = condition(&m, "Degraded").unwrap();
    assert!(
        message.contains(&format!("PodDisruptionBudget {}/m", s.ns.name)),
        "the condition names the budget: {message}"
    );
    s.warning_event("m", "NameConflict", "PodDisruptionBudget")
        .await;

    // Removing the field deletes nothing that is not ours.
    s.set(json!({"disruptionBudget": null})).await;
    s.wait("be Healthy without a budget", healthy).await;
    let untouched = |now: &PodDisruptionBudget| {
        // Status is the disruption controller's; the rest is theirs.
        assert_eq!(now.metadata.uid, theirs.metadata.uid);
        assert_eq!(now.metadata.generation, theirs.metadata.generation);
        assert_eq!(now.spec, theirs.spec);
        assert_eq!(now.labels(), theirs.labels());
        assert!(now.owner_references().is_empty());
        let ours = now
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .any(|f| f.manager.as_deref() == Some("model-operator"));
        assert!(!ours, "the operator applied a field of theirs");
    };
    untouched(&pdbs.get("m").await.expect("their budget is still there"));

    // Asked for again: refused again, theirs still untouched.
    s.set(json!({"disruptionBudget": {"minAvailable": 1}}))
        .await;
    s.wait("be Degraded: NameConflict again", |m| {
        degraded_because(m, "NameConflict")
    })
    .await;
    untouched(&pdbs.get("m").await.unwrap());
}
