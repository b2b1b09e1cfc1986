//! Table tests of the pure builders, from YAML fixtures of the resource.

use crate::resources::Platform;
use k8s_openapi::api::core::v1::Container;
use serde_json::json;

use super::*;
use crate::api::{ModelDeployment, ServedVersion};
use crate::fixtures;

/// `fraud` in `ml` (uid `u-1`, generation 1) with this spec.
fn md(spec_yaml: &str) -> ModelDeployment {
    fixtures::md()
        .uid("u-1")
        .generation(1)
        .spec_yaml(spec_yaml)
        .build()
}

const BASE: &str = "  model: {version: '2.1.0', uri: 's3://m/2.1.0'}\n  server: {image: 'srv:1'}\n";

fn container(md: &ModelDeployment) -> Container {
    let d = deployment(md, &ServedVersion::requested(md), 1, &Platform::default());
    d.spec.unwrap().template.spec.unwrap().containers.remove(0)
}

#[test]
fn deployment_replicas_follow_autoscaling() {
    let cases = [
        ("default", String::new(), Some(1)),
        ("fixed", "  replicas: 3\n".to_string(), Some(3)),
        (
            "autoscaled",
            "  replicas: 3\n  autoscaling: {minReplicas: 2, maxReplicas: 5}\n".to_string(),
            None,
        ),
        (
            "external scaler",
            "  replicas: 3\n  autoscaling: {mode: External}\n".to_string(),
            Some(3),
        ),
        (
            "scaled to zero",
            "  replicas: 0\n  autoscaling: {mode: External}\n".to_string(),
            Some(0),
        ),
    ];
    for (name, extra, want) in cases {
        let md = md(&format!("{BASE}{extra}"));
        let d = deployment(&md, &ServedVersion::requested(&md), 1, &Platform::default());
        assert_eq!(d.spec.unwrap().replicas, want, "{name}");
    }
}

#[test]
fn replace_in_place_never_surges_and_always_moves() {
    // (rollout fields, the Deployment's rollingUpdate)
    let cases = [
        ("{}", json!({"maxSurge": "25%", "maxUnavailable": 0})),
        (
            "{podReplacement: Surge, maxSurge: 2}",
            json!({"maxSurge": 2, "maxUnavailable": 0}),
        ),
        (
            "{podReplacement: ReplaceInPlace}",
            json!({"maxSurge": 0, "maxUnavailable": 1}),
        ),
        (
            "{podReplacement: ReplaceInPlace, maxSurge: 3, maxUnavailable: 0}",
            json!({"maxSurge": 0, "maxUnavailable": 1}),
        ),
        (
            "{podReplacement: ReplaceInPlace, maxUnavailable: 2}",
            json!({"maxSurge": 0, "maxUnavailable": 2}),
        ),
        // The API server refuses 0% beside maxSurge 0; a percentage that
        // rounds down to 0 pods the Deployment controller takes as 1 pod.
        (
            "{podReplacement: ReplaceInPlace, maxUnavailable: '0%'}",
            json!({"maxSurge": 0, "maxUnavailable": 1}),
        ),
        (
            "{podReplacement: ReplaceInPlace, maxUnavailable: '00%'}",
            json!({"maxSurge": 0, "maxUnavailable": 1}),
        ),
        (
            "{podReplacement: ReplaceInPlace, maxUnavailable: '10%'}",
            json!({"maxSurge": 0, "maxUnavailable": "10%"}),
        ),
        (
            "{podReplacement: ReplaceInPlace, maxUnavailable: '50%'}",
            json!({"maxSurge": 0, "maxUnavailable": "50%"}),
        ),
    ];
    for (rollout, want) in cases {
        let md = md(&format!("{BASE}  rollout: {rollout}\n"));
        let d = deployment(&md, &ServedVersion::requested(&md), 1, &Platform::default());
        let rolling = d.spec.unwrap().strategy.unwrap().rolling_update.unwrap();
        assert_eq!(serde_json::to_value(rolling).unwrap(), want, "{rollout}");
    }
}

#[test]
fn deployment_carries_owner_labels_and_strategy() {
    let md = md(&format!(
        "{BASE}  rollout: {{maxSurge: 1, maxUnavailable: '10%', progressDeadlineSeconds: 60}}\n"
    ));
    let d = deployment(&md, &ServedVersion::requested(&md), 1, &Platform::default());
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ModelDeployment", "fraud", Some(true))
    );
    let spec = d.spec.unwrap();
    assert_eq!(spec.progress_deadline_seconds, Some(60));
    let rolling = spec.strategy.unwrap().rolling_update.unwrap();
    assert_eq!(
        serde_json::to_value(rolling).unwrap(),
        json!({"maxSurge": 1, "maxUnavailable": "10%"})
    );
    assert_eq!(
        serde_json::to_value(&spec.selector.match_labels).unwrap(),
        json!({"app.kubernetes.io/instance": "fraud", "app.kubernetes.io/managed-by": "model-operator"})
    );
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(pod_labels["app.kubernetes.io/name"], "fraud");
    assert_eq!(pod_labels["app.kubernetes.io/version"], "2.1.0");
    assert_eq!(pod_labels["mlops.dev/revision"], "1");
}

#[test]
fn model_env_comes_first_and_user_env_follows() {
    let md = md(
        "  model: {name: fx, version: '3'}\n  server: {image: 'srv:1', env: [{name: LOG, value: debug}]}\n",
    );
    let names: Vec<_> = container(&md)
        .env
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    assert_eq!(
        names,
        vec![
            ("MODEL_NAME".to_string(), Some("fx".to_string())),
            ("MODEL_VERSION".to_string(), Some("3".to_string())),
            ("LOG".to_string(), Some("debug".to_string())),
        ]
    );
    let with_uri = container(&self::md(BASE)).env.unwrap();
    assert!(
        with_uri
            .iter()
            .any(|e| e.name == "MODEL_URI" && e.value.as_deref() == Some("s3://m/2.1.0"))
    );
}

#[test]
fn readiness_probe_defaults_to_tcp_on_the_server_port_and_can_be_replaced() {
    let probe = container(&md(BASE)).readiness_probe.unwrap();
    assert_eq!(
        serde_json::to_value(probe.tcp_socket).unwrap(),
        json!({"port": "http"})
    );
    let custom = md(
        "  model: {version: '1'}\n  server: {image: 'srv:1', readinessProbe: {httpGet: {path: /v2/health/ready, port: 8080}}}\n",
    );
    let probe = container(&custom).readiness_probe.unwrap();
    assert!(probe.tcp_socket.is_none());
    assert_eq!(
        probe.http_get.unwrap().path.as_deref(),
        Some("/v2/health/ready")
    );
}

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    let md = md(BASE);
    let d = deployment(&md, &ServedVersion::requested(&md), 1, &Platform::default());
    let pod = d.spec.unwrap().template.spec.unwrap();
    let pod_sc = pod.security_context.unwrap();
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(pod_sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let sc = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn user_pod_labels_cannot_override_the_operators() {
    let md = md(&format!(
        "{BASE}  podMetadata: {{labels: {{app.kubernetes.io/instance: other, team: a}}, annotations: {{x: y}}}}\n"
    ));
    let d = deployment(&md, &ServedVersion::requested(&md), 1, &Platform::default());
    let meta = d.spec.unwrap().template.metadata.unwrap();
    let labels = meta.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/instance"], "fraud");
    assert_eq!(labels["team"], "a");
    assert_eq!(meta.annotations.unwrap()["x"], "y");
}

#[test]
fn service_selects_every_version_and_targets_the_named_port() {
    let cases = [
        ("defaults", String::new(), 80, "ClusterIP"),
        (
            "custom",
            "  service: {port: 9000, type: NodePort}\n".to_string(),
            9000,
            "NodePort",
        ),
    ];
    for (name, extra, port, type_) in cases {
        let md = md(&format!("{BASE}{extra}"));
        let svc = service(&md, "fraud");
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some(type_), "{name}");
        let p = &spec.ports.unwrap()[0];
        assert_eq!(
            (p.port, serde_json::to_value(&p.target_port).unwrap()),
            (port, json!("http")),
            "{name}"
        );
        let selector = spec.selector.unwrap();
        assert!(
            !selector.contains_key(labels::VERSION),
            "{name}: the selector spans versions"
        );
        // The Deployment's selector, and the owner's uid that only the
        // Deployment's pods carry (a hand-made pod gets no traffic).
        let mut expected = labels::selector("fraud");
        expected.insert(labels::OWNER_UID.to_string(), "u-1".to_string());
        assert_eq!(selector, expected, "{name}");
    }
    let d = deployment(
        &md(BASE),
        &ServedVersion::requested(&md(BASE)),
        1,
        &Platform::default(),
    );
    let spec = d.spec.unwrap();
    assert_eq!(
        spec.selector.match_labels,
        Some(labels::selector("fraud")),
        "the Deployment's (immutable) selector is unchanged"
    );
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(
        pod_labels.get(labels::OWNER_UID).map(String::as_str),
        Some("u-1")
    );
}

#[test]
fn hpa_only_with_autoscaling() {
    assert!(hpa(&md(BASE), "fraud").is_none());
    let md = md(&format!(
        "{BASE}  autoscaling: {{minReplicas: 2, maxReplicas: 9, targetCPUUtilizationPercentage: 65}}\n"
    ));
    let h = hpa(&md, "fraud").unwrap();
    assert_eq!((h.spec.min_replicas, h.spec.max_replicas), (Some(2), 9));
    assert_eq!(h.spec.scale_target_ref.name, "fraud");
    let metric = &h.spec.metrics.unwrap()[0];
    assert_eq!(
        metric.resource.as_ref().unwrap().target.average_utilization,
        Some(65)
    );
}

#[test]
fn the_hpa_takes_the_specs_metrics_and_behavior_or_cpu_at_80() {
    let cpu = |percent: i32| json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}]);
    let queue = json!([{"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_waiting"}, "target": {"type": "AverageValue", "averageValue": "5"}}}]);
    let behavior = json!({"scaleDown": {"stabilizationWindowSeconds": 600, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]}});
    // (name, autoscaling, (min, max), metrics, behavior); None: no HPA
    let cases = [
        (
            "defaults",
            json!({"maxReplicas": 4}),
            Some(((1, 4), cpu(80), None)),
        ),
        (
            "cpu shorthand",
            json!({"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 65}),
            Some(((2, 4), cpu(65), None)),
        ),
        (
            "metrics and behavior",
            json!({"minReplicas": 2, "maxReplicas": 8, "metrics": queue, "behavior": behavior}),
            Some(((2, 8), queue.clone(), Some(behavior.clone()))),
        ),
        ("external scaler", json!({"mode": "External"}), None),
    ];
    for (name, autoscaling, want) in cases {
        let mut md = md(BASE);
        md.spec.autoscaling = Some(serde_json::from_value(autoscaling).unwrap());
        let got = hpa(&md, "fraud").map(|h| {
            let spec = serde_json::to_value(&h.spec).unwrap();
            (
                (h.spec.min_replicas.unwrap(), h.spec.max_replicas),
                spec["metrics"].clone(),
                h.spec.behavior.map(|b| serde_json::to_value(b).unwrap()),
            )
        });
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn defaults_apply_when_fields_are_left_out() {
    let md = md(BASE);
    assert_eq!(md.spec.replicas, 1);
    assert_eq!(md.spec.server.port, 8080);
    assert_eq!(md.spec.service.port, 80);
    assert_eq!(md.spec.revision_history_limit, 10);
    assert_eq!(md.spec.rollout.progress_deadline_seconds, 300);
    assert_eq!(service_url(&md), "http://fraud.ml.svc:80");
}

#[test]
fn the_canary_deployment_has_its_own_name_selector_and_replicas() {
    for extra in ["", "  autoscaling: {maxReplicas: 5}\n"] {
        let md = md(&format!("{BASE}{extra}"));
        let d = canary_deployment(
            &md,
            &ServedVersion::requested(&md),
            5,
            2,
            &Platform::default(),
        );
        assert_eq!(d.metadata.name.as_deref(), Some("fraud-canary"));
        assert_eq!(selected_revision(&d), Some(5));
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2), "always the step's count: {extra}");
        let selector = spec.selector.match_labels.unwrap();
        assert_eq!(
            selector.get(labels::REVISION).map(String::as_str),
            Some("5"),
            "a canary Deployment is for one revision"
        );
        let pod = spec.template.metadata.unwrap().labels.unwrap();
        assert!(
            selector.iter().all(|(k, v)| pod.get(k) == Some(v)),
            "the selector selects its pods"
        );
        assert_eq!(pod.get(labels::REVISION).map(String::as_str), Some("5"));
    }
}

#[test]
fn pdb_only_with_a_disruption_budget() {
    assert!(pdb(&md(BASE), "fraud").is_none());
    let cases = [
        ("minAvailable: 1", Some(json!(1)), None),
        ("minAvailable: '50%'", Some(json!("50%")), None),
        ("maxUnavailable: 2", None, Some(json!(2))),
        ("maxUnavailable: '25%'", None, Some(json!("25%"))),
    ];
    for (budget, min, max) in cases {
        let md = md(&format!("{BASE}  disruptionBudget: {{{budget}}}\n"));
        let p = pdb(&md, "fraud").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("fraud"), "{budget}");
        assert_eq!(p.metadata.namespace.as_deref(), Some("ml"), "{budget}");
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ModelDeployment", "u-1", Some(true)),
            "{budget}"
        );
        assert_eq!(p.metadata.labels, Some(labels::common("fraud", "fraud")));
        let spec = p.spec.unwrap();
        let json = |v: &Option<_>| v.as_ref().map(|v| serde_json::to_value(v).unwrap());
        assert_eq!(
            (json(&spec.min_available), json(&spec.max_unavailable)),
            (min, max),
            "{budget}"
        );
    }
}

#[test]
fn the_pdb_selects_every_pod_of_this_model_and_no_other() {
    let md = md(&format!("{BASE}  disruptionBudget: {{minAvailable: 1}}\n"));
    let selector = pdb(&md, "fraud").unwrap().spec.unwrap().selector.unwrap();
    assert!(selector.match_expressions.is_none());
    let selector = selector.match_labels.unwrap();
    assert_eq!(
        Some(&selector),
        service(&md, "fraud").spec.unwrap().selector.as_ref(),
        "the Service's selector"
    );
    let served = ServedVersion::requested(&md);
    let pods = |d: k8s_openapi::api::apps::v1::Deployment| {
        d.spec.unwrap().template.metadata.unwrap().labels.unwrap()
    };
    let stable = pods(deployment(&md, &served, 1, &Platform::default()));
    let canary = pods(canary_deployment(&md, &served, 2, 1, &Platform::default()));
    let selects = |pod: &std::collections::BTreeMap<String, String>| {
        selector.iter().all(|(k, v)| pod.get(k) == Some(v))
    };
    assert!(selects(&stable), "stable pods");
    assert!(selects(&canary), "canary pods");
    // A model of the same name elsewhere, recreated under a new uid, or a
    // pod copied by hand without the uid: not this budget's.
    let other = fixtures::md()
        .uid("u-2")
        .generation(1)
        .spec_yaml(BASE)
        .build();
    let theirs = pods(deployment(&other, &served, 1, &Platform::default()));
    assert!(!selects(&theirs), "another object's pods");
    let mut copied = stable.clone();
    copied.remove(labels::OWNER_UID);
    assert!(!selects(&copied), "a pod without the owner uid");
}

#[test]
fn a_disruption_budget_is_no_part_of_a_revision() {
    let without = md(BASE);
    let with = md(&format!(
        "{BASE}  disruptionBudget: {{maxUnavailable: 1}}\n"
    ));
    assert_eq!(
        ServedVersion::requested(&without),
        ServedVersion::requested(&with)
    );
    let template = |md: &ModelDeployment| {
        deployment(md, &ServedVersion::requested(md), 1, &Platform::default())
            .spec
            .unwrap()
            .template
    };
    assert_eq!(template(&without), template(&with));
}

#[test]
fn the_split_services_select_revisions_not_roles() {
    let md = md(BASE);
    let selector = |s: &k8s_openapi::api::core::v1::Service| {
        s.spec.as_ref().unwrap().selector.clone().unwrap()
    };
    // (stable, canary) → the revision label each selects (absent: any)
    let cases = [
        ((Some(1), Some(2)), (Some("1"), Some("2"))),
        ((None, Some(2)), (None, Some("2"))),
        ((Some(3), None), (Some("3"), Some("none"))),
    ];
    for ((stable, canary), (want_stable, want_canary)) in cases {
        let [s, c] = route::split_services(&md, "fraud", stable, canary);
        assert_eq!(
            selector(&s).get(labels::REVISION).map(String::as_str),
            want_stable
        );
        assert_eq!(
            selector(&c).get(labels::REVISION).map(String::as_str),
            want_canary
        );
        for service in [&s, &c] {
            assert_eq!(
                selector(service).get(labels::INSTANCE).map(String::as_str),
                Some("fraud"),
                "never another model's pods"
            );
        }
    }
}
