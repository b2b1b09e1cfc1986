//! Fault test: someone edits the child Deployment by hand while a rollout
//! runs. Server-side apply field ownership decides: the fields the operator
//! sets (image, replicas, the model's env) go back to its values, and what the
//! person added that the operator does not set (a label, an annotation, an
//! extra env var) stays, without the two writers fighting.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn container(d: &Deployment) -> k8s_openapi::api::core::v1::Container {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].clone())
        .unwrap_or_default()
}

fn env(d: &Deployment, name: &str) -> Option<String> {
    container(d)
        .env
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value)
}

/// The operator's values for revision `revision` of model `version`.
fn operators_values(d: &Deployment, version: &str, image: &str) -> bool {
    container(d).image.as_deref() == Some(image)
        && env(d, "MODEL_VERSION").as_deref() == Some(version)
        && d.spec.as_ref().and_then(|s| s.replicas) == Some(2)
}

/// What the person added is all still there.
fn users_additions_kept(d: &Deployment) {
    assert_eq!(d.labels().get("team").map(String::as_str), Some("fraud"));
    assert_eq!(
        d.annotations()
            .get("example.com/ticket")
            .map(String::as_str),
        Some("OPS-42")
    );
    assert_eq!(env(d, "EXTRA_DEBUG").as_deref(), Some("1"));
}

#[tokio::test]
async fn the_operators_fields_win_and_the_users_other_fields_stay() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "fault-conflict").await;
    let _operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);

    create_stable_m(&mds).await;

    // A rollout that stays under way: never-ready pods, a far deadline.
    let v2 = json!({"spec": {"model": {"version": "2"}, "server": {"image": "srv:2"},
        "podMetadata": {"labels": {"mlops.dev/simulate": "never-ready"}}}});
    mds.patch("m", &PatchParams::default(), &Patch::Merge(v2))
        .await
        .unwrap();
    wait_for(&deployments, "m", "start revision 2", TIMEOUT, |d| {
        model_operator::resources::revision_of(d) == Some(2)
    })
    .await;

    // `kubectl edit`: a strategic merge patch under another field manager,
    // both over the operator's fields and beside them.
    let edit = json!({
        "metadata": {"labels": {"team": "fraud"}, "annotations": {"example.com/ticket": "OPS-42"}},
        "spec": {"replicas": 5, "template": {"spec": {"containers": [{
            "name": "model-server", "image": "evil:6",
            "env": [{"name": "MODEL_VERSION", "value": "hacked"}, {"name": "EXTRA_DEBUG", "value": "1"}],
        }]}}},
    });
    let user = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    deployments
        .patch("m", &user, &Patch::Strategic(edit))
        .await
        .expect("hand edit");

    let d = wait_for(
        &deployments,
        "m",
        "get the operator's image, env and replicas back",
        TIMEOUT,
        |d| operators_values(d, "2", "srv:2"),
    )
    .await;
    users_additions_kept(&d);
    assert_eq!(model_operator::resources::revision_of(&d), Some(2));

    // No fight: once restored, the operator leaves the spec alone (the
    // generation counts spec writes; status updates do not move it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let generation = deployments.get("m").await.unwrap().metadata.generation;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = deployments.get("m").await.unwrap();
    assert_eq!(
        d.metadata.generation, generation,
        "the Deployment's spec keeps being rewritten"
    );
    users_additions_kept(&d);

    // The rollout still ends normally, and the additions survive it.
    let v3 = json!({"spec": {"model": {"version": "3"}, "server": {"image": "srv:3"},
        "podMetadata": {"labels": {"mlops.dev/simulate": null}}}});
    mds.patch("m", &PatchParams::default(), &Patch::Merge(v3))
        .await
        .unwrap();
    wait_for(&mds, "m", "make revision 3 stable", TIMEOUT, |m| {
        outcome(m, 3) == Some(Outcome::Stable)
            && m.status.as_ref().and_then(|s| s.phase) == Some(Phase::Healthy)
    })
    .await;
    let d = wait_for(&deployments, "m", "run revision 3", TIMEOUT, |d| {
        operators_values(d, "3", "srv:3")
    })
    .await;
    users_additions_kept(&d);
}
