//! A ModelDeployment on the real control plane: children, status, drift,
//! garbage collection, scaling, and refusal of bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use model_operator::api::{ModelDeployment, Phase};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

fn sample(file: &str) -> ModelDeployment {
    let path = repo_root().join("config/samples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_healthy(md: &ModelDeployment) -> bool {
    let status = md.status.as_ref();
    status.and_then(|s| s.observed_generation) == md.metadata.generation
        && status.and_then(|s| s.phase) == Some(Phase::Healthy)
        && condition(md, "Ready").is_some_and(|c| c.0 == "True")
}

/// Waits until `name` is Healthy and Ready at its generation.
async fn healthy(s: &Setup, name: &str) -> ModelDeployment {
    wait_for(
        &s.mds,
        name,
        "be Healthy and Ready at its generation",
        TIMEOUT,
        is_healthy,
    )
    .await
}

fn owned_by(meta: &impl Resource, md: &ModelDeployment) -> bool {
    meta.owner_references().iter().any(|r| {
        Some(&r.uid) == md.metadata.uid.as_ref()
            && r.controller == Some(true)
            && r.kind == "ModelDeployment"
    })
}

#[tokio::test]
async fn samples_create_children_and_become_ready() {
    let s = Setup::new("md-samples").await;
    let fraud = s.create_md(&sample("fraud-detector.yaml")).await;
    let recsys = s.create_md(&sample("recommender-autoscaled.yaml")).await;

    let fraud = healthy(&s, &fraud.name_any()).await;
    let status = fraud.status.clone().expect("status");
    assert_eq!(status.observed_generation, fraud.metadata.generation);
    assert_eq!((status.ready_replicas, status.available_replicas), (2, 2));
    assert_eq!(status.ready_summary.as_deref(), Some("2/2"));
    assert_eq!(
        status.url,
        Some(format!("http://fraud-detector.{}.svc:80", s.ns.name))
    );
    for type_ in ["Ready", "Progressing", "Degraded"] {
        let c = fraud
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect(type_);
        assert_eq!(c.observed_generation, fraud.metadata.generation, "{type_}");
    }
    assert_eq!(
        condition(&fraud, "Progressing").map(|c| c.1),
        Some("RolloutComplete".into())
    );
    assert_eq!(
        condition(&fraud, "Degraded").map(|c| c.0),
        Some("False".into())
    );

    let d = s
        .deployments
        .get("fraud-detector")
        .await
        .expect("Deployment");
    assert!(
        owned_by(&d, &fraud),
        "Deployment has a controller owner reference"
    );
    let pod_labels = d
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(
        pod_labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("fraud-detector")
    );
    assert_eq!(
        pod_labels
            .get("app.kubernetes.io/version")
            .map(String::as_str),
        Some("2.1.0")
    );
    let svc = s.services.get("fraud-detector").await.expect("Service");
    assert!(owned_by(&svc, &fraud));
    assert!(
        s.hpas.get_opt("fraud-detector").await.unwrap().is_none(),
        "no HPA without autoscaling"
    );

    let recsys = healthy(&s, &recsys.name_any()).await;
    let hpa = s
        .hpas
        .get("recommender")
        .await
        .expect("HPA for the autoscaled sample");
    assert!(owned_by(&hpa, &recsys));
    assert_eq!(hpa.spec.min_replicas, Some(2));
    assert_eq!(hpa.spec.max_replicas, 6);
    let d = s.deployments.get("recommender").await.unwrap();
    assert!(owned_by(&d, &recsys));

    // kubectl wait works on the Ready condition.
    let out = kubectl(&[
        "-n",
        &s.ns.name,
        "wait",
        "--for=condition=Ready",
        "mdep/fraud-detector",
        "--timeout=30s",
    ]);
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // kubectl get shows the printer columns.
    let out = kubectl(&["-n", &s.ns.name, "get", "mdep", "fraud-detector"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("MODEL")
            && table.contains("VERSION")
            && table.contains("READY")
            && table.contains("PHASE"),
        "{table}"
    );
    assert!(
        table.contains("fraud-detector")
            && table.contains("2.1.0")
            && table.contains("2/2")
            && table.contains("Healthy"),
        "{table}"
    );

    // Events tell the story in kubectl describe.
    let events = Api::<Event>::namespaced(s.client.clone(), &s.ns.name)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let reasons: Vec<_> = events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("fraud-detector"))
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect();
    assert!(
        reasons.contains(&"Created".to_string())
            && reasons.contains(&"RolloutComplete".to_string()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn drift_is_restored() {
    let s = Setup::new("md-drift").await;
    let md = s
        .create_named(
            "drifty",
            json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2}),
        )
        .await;
    healthy(&s, &md.name_any()).await;

    // A hand edit of a field the operator owns is undone...
    let user = PatchParams::apply("someone-with-kubectl").force();
    let edit = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "model-server", "image": "evil:6"}]}}}});
    s.deployments
        .patch("drifty", &user, &Patch::Apply(&edit))
        .await
        .expect("hand edit");
    wait_for(
        &s.deployments,
        "drifty",
        "get its image back",
        TIMEOUT,
        |d| {
            d.spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .as_deref()
                == Some("srv:1")
        },
    )
    .await;

    // ...a deleted child comes back...
    let old_uid = s.services.get("drifty").await.unwrap().metadata.uid;
    delete(&s.services, "drifty").await;
    wait_for(&s.services, "drifty", "be recreated", TIMEOUT, |svc| {
        svc.metadata.uid != old_uid
    })
    .await;

    // ...and a user's own additions are left alone.
    let label = json!({"metadata": {"labels": {"team": "fraud"}}});
    s.services
        .patch("drifty", &PatchParams::default(), &Patch::Merge(label))
        .await
        .unwrap();
    s.patch_spec("drifty", json!({"replicas": 3})).await;
    wait_for(&s.deployments, "drifty", "scale to 3", TIMEOUT, |d| {
        d.spec.as_ref().unwrap().replicas == Some(3)
    })
    .await;
    let svc = s.services.get("drifty").await.unwrap();
    assert_eq!(svc.labels().get("team").map(String::as_str), Some("fraud"));
}

#[tokio::test]
async fn deleting_the_model_deployment_deletes_its_children() {
    let s = Setup::new("md-gc").await;
    let spec = json!({"model": {"version": "1"}, "server": {"image": "srv:1"},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3}});
    let md = s.create_named("ephemeral", spec).await;
    healthy(&s, &md.name_any()).await;
    assert!(s.hpas.get_opt("ephemeral").await.unwrap().is_some());
    delete(&s.mds, "ephemeral").await;
    wait_gone(&s.deployments, "ephemeral", TIMEOUT).await;
    wait_gone(&s.services, "ephemeral", TIMEOUT).await;
    wait_gone(&s.hpas, "ephemeral", TIMEOUT).await;
}

#[tokio::test]
async fn autoscaling_owns_replicas_and_turning_it_off_removes_the_hpa() {
    let s = Setup::new("md-hpa").await;
    let spec = json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1,
        "autoscaling": {"minReplicas": 1, "maxReplicas": 5}});
    let md = s.create_named("scaly", spec).await;
    healthy(&s, &md.name_any()).await;

    // Scale by hand, as the HorizontalPodAutoscaler would.
    let scale = json!({"spec": {"replicas": 3}});
    s.deployments
        .patch_scale("scaly", &PatchParams::default(), &Patch::Merge(scale))
        .await
        .unwrap();
    wait_for(&s.deployments, "scaly", "have 3 available", TIMEOUT, |d| {
        d.status.as_ref().and_then(|st| st.available_replicas) == Some(3)
    })
    .await;
    // Make the operator reconcile (an annotation is not a spec change), then
    // check it left the count alone.
    let touch = json!({"metadata": {"annotations": {"test/touch": "1"}}});
    s.mds
        .patch("scaly", &PatchParams::default(), &Patch::Merge(touch))
        .await
        .unwrap();
    wait_for(&s.mds, "scaly", "report 3 ready replicas", TIMEOUT, |m| {
        m.status
            .as_ref()
            .is_some_and(|st| st.ready_replicas == 3 && st.ready_summary.as_deref() == Some("3/3"))
    })
    .await;
    assert_eq!(
        s.deployments
            .get("scaly")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(3)
    );

    // Autoscaling off: the HPA goes, spec.replicas rules again.
    s.mds
        .patch(
            "scaly",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"autoscaling": null, "replicas": 2}})),
        )
        .await
        .unwrap();
    wait_gone(&s.hpas, "scaly", TIMEOUT).await;
    wait_for(
        &s.deployments,
        "scaly",
        "go to spec.replicas",
        TIMEOUT,
        |d| d.spec.as_ref().unwrap().replicas == Some(2),
    )
    .await;
    healthy(&s, "scaly").await;
}

#[tokio::test]
async fn changing_replicas_scales() {
    let s = Setup::new("md-scale").await;
    let md = s
        .create_named(
            "scaled",
            json!({"model": {"version": "1"}, "server": {"image": "srv:1"}}),
        )
        .await;
    healthy(&s, &md.name_any()).await;
    s.patch_spec("scaled", json!({"replicas": 4})).await;
    let md = wait_for(&s.mds, "scaled", "serve on 4 pods", TIMEOUT, |m| {
        is_healthy(m)
            && m.status
                .as_ref()
                .is_some_and(|st| st.available_replicas == 4)
    })
    .await;
    assert_eq!(md.status.unwrap().ready_summary.as_deref(), Some("4/4"));

    // kubectl scale works through the scale subresource.
    let out = kubectl(&["-n", &s.ns.name, "scale", "mdep/scaled", "--replicas=1"]);
    assert!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(&s.deployments, "scaled", "scale to 1", TIMEOUT, |d| {
        d.spec.as_ref().unwrap().replicas == Some(1)
    })
    .await;
}

#[tokio::test]
async fn an_invalid_spec_at_runtime_leaves_the_running_children_alone() {
    let s = Setup::new("md-invalid").await;
    let md = s
        .create_named(
            "steady",
            json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 2}),
        )
        .await;
    healthy(&s, &md.name_any()).await;
    let before = s.deployments.get("steady").await.unwrap();

    // An env var with both a value and a source passes the CRD (the operator
    // does not copy every core/v1 rule into CEL); the API server refuses the
    // Deployment; the operator reports it and keeps what runs.
    let env = json!([{"name": "TOKEN", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
    s.patch_spec(
        "steady",
        json!({"model": {"version": "2.0"}, "server": {"env": env}}),
    )
    .await;
    let md = wait_for(&s.mds, "steady", "report InvalidSpec", TIMEOUT, |m| {
        m.status.as_ref().and_then(|st| st.observed_generation) == m.metadata.generation
            && condition(m, "Degraded").is_some_and(|c| c.0 == "True" && c.1 == "InvalidSpec")
    })
    .await;
    let (_, _, message) = condition(&md, "Degraded").unwrap();
    assert!(
        message.contains("the API server refused the Deployment") && message.contains("valueFrom"),
        "message names the cause: {message}"
    );
    assert_eq!(md.status.as_ref().unwrap().phase, Some(Phase::Degraded));
    assert_eq!(
        condition(&md, "Ready").map(|c| c.0),
        Some("True".into()),
        "the old version still serves"
    );
    let after = s.deployments.get("steady").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "Deployment untouched"
    );

    // A pod label the schema cannot check is caught by the operator.
    s.patch_spec(
        "steady",
        json!({"server": {"env": null}, "podMetadata": {"labels": {"team": "fraud team"}}}),
    )
    .await;
    let md = wait_for(&s.mds, "steady", "report the bad label", TIMEOUT, |m| {
        m.status.as_ref().and_then(|st| st.observed_generation) == m.metadata.generation
            && condition(m, "Degraded")
                .is_some_and(|c| c.1 == "InvalidSpec" && c.2.contains("fraud team"))
    })
    .await;
    assert!(md.status.is_some());
    let after = s.deployments.get("steady").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "Deployment untouched"
    );

    let events = warnings(&s.client, &s.ns.name, None).await;
    assert!(
        events.iter().any(|(reason, _)| reason == "InvalidSpec"),
        "a Warning event is recorded"
    );

    // Fixing the spec rolls the new version out.
    s.patch_spec(
        "steady",
        json!({"podMetadata": {"labels": {"team": "fraud"}}}),
    )
    .await;
    let md = healthy(&s, "steady").await;
    assert_eq!(
        condition(&md, "Degraded").map(|c| c.0),
        Some("False".into())
    );
    let d = s.deployments.get("steady").await.unwrap();
    let labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(
        labels.get("app.kubernetes.io/version").map(String::as_str),
        Some("2.0")
    );
}

#[tokio::test]
async fn a_converged_model_deployment_causes_no_writes() {
    let s = Setup::new("md-quiet").await;
    let md = s
        .create_named(
            "quiet",
            json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 2,
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}),
        )
        .await;
    healthy(&s, &md.name_any()).await;
    // Let the HPA controller settle first: its writes are not ours. Its
    // first look at a new HPA comes one sync period later (5 s here, 15 s by
    // default), when it raises the Deployment from 1 pod to minReplicas.
    wait_for(
        &s.deployments,
        "quiet",
        "be scaled to minReplicas by the HPA controller, and rolled out",
        TIMEOUT,
        |d| {
            let status = d.status.clone().unwrap_or_default();
            d.spec.as_ref().and_then(|s| s.replicas) == Some(2)
                && status.observed_generation == d.metadata.generation
                && status.updated_replicas == Some(2)
                && status.available_replicas == Some(2)
        },
    )
    .await;
    healthy(&s, &md.name_any()).await;
    let versions = |d: &Deployment, svc: &Service, h: &HorizontalPodAutoscaler| {
        (
            d.metadata.resource_version.clone(),
            svc.metadata.resource_version.clone(),
            h.metadata.annotations.clone(),
        )
    };
    let before = versions(
        &s.deployments.get("quiet").await.unwrap(),
        &s.services.get("quiet").await.unwrap(),
        &s.hpas.get("quiet").await.unwrap(),
    );

    // Several reconciles triggered without a spec change.
    for i in 0..3 {
        let touch = json!({"metadata": {"annotations": {"test/touch": i.to_string()}}});
        s.mds
            .patch("quiet", &PatchParams::default(), &Patch::Merge(touch))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let md_before = s.mds.get("quiet").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = versions(
        &s.deployments.get("quiet").await.unwrap(),
        &s.services.get("quiet").await.unwrap(),
        &s.hpas.get("quiet").await.unwrap(),
    );
    assert_eq!(before.0, after.0, "Deployment was written");
    assert_eq!(before.1, after.1, "Service was written");
    assert_eq!(before.2, after.2, "HPA annotations changed");
    let md_after = s.mds.get("quiet").await.unwrap();
    assert_eq!(
        md_before.metadata.resource_version, md_after.metadata.resource_version,
        "status was rewritten"
    );
}

/// The API server's PodSecurity admission enforces the restricted standard
/// in this namespace: model pods are admitted only if they meet it.
#[tokio::test]
async fn model_pods_are_admitted_under_the_restricted_pod_security_standard() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::with_labels(
        &client,
        "md-restricted",
        json!({"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}),
    )
    .await;
    let _operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    mds.create(
        &PostParams::default(),
        &model(
            "strict",
            json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 2}),
        ),
    )
    .await
    .unwrap();
    let md = wait_for(
        &mds,
        "strict",
        "be Healthy under restricted PSS",
        TIMEOUT,
        is_healthy,
    )
    .await;
    assert_eq!(md.status.unwrap().available_replicas, 2);

    // Control: the same namespace refuses a pod that does not meet the standard.
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns.name);
    let plain: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "srv:1"}]}
    }))
    .unwrap();
    match pods.create(&PostParams::default(), &plain).await {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("restricted") => {}
        other => panic!("a non-compliant pod should be forbidden, got {other:?}"),
    }
}
