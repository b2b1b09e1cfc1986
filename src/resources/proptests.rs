//! Properties of the builders over arbitrary specs: they never panic, are
//! deterministic, and never produce a privileged pod or let user labels
//! override the operator's.

use crate::resources::Platform;
use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::api::{ModelDeployment, ServedVersion};

fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}".prop_map(|s| s),
        Just("app.kubernetes.io/instance".to_string()),
        Just("app.kubernetes.io/managed-by".to_string()),
        Just("mlops.dev/revision".to_string()),
        "[a-z]{1,5}\\.io/[a-z]{1,8}".prop_map(|s| s),
    ]
}

prop_compose! {
    fn any_md()(
        version in "[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
        name in proptest::option::of("[a-z][a-z0-9-]{0,20}"),
        image in "[a-z0-9./:-]{1,40}",
        port in 1..=65535i32,
        replicas in 0..50i32,
        autoscaling in proptest::option::of((1..10i32, 0..10i32, 1..=100i32)),
        labels in proptest::collection::btree_map(label_key(), "[a-z0-9]{0,8}", 0..6),
        env in proptest::collection::vec(("[A-Z_]{1,10}", ".{0,20}"), 0..5),
        surge in 0..5i32,
    ) -> ModelDeployment {
        let mut spec = json!({
            "model": {"version": version, "name": name},
            "server": {"image": image, "port": port,
                       "env": env.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>()},
            "replicas": replicas,
            "podMetadata": {"labels": labels.into_iter().collect::<BTreeMap<_, _>>()},
            "rollout": {"maxSurge": surge + 1, "maxUnavailable": 0},
        });
        if let Some((min, extra, cpu)) = autoscaling {
            spec["autoscaling"] = json!({"minReplicas": min, "maxReplicas": min + extra, "targetCPUUtilizationPercentage": cpu});
        }
        serde_json::from_value(json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u"}, "spec": spec,
        })).expect("generated spec deserializes")
    }
}

proptest! {
    #[test]
    fn builders_are_deterministic_and_never_privileged(md in any_md(), revision in 1..1000i64) {
        let served = ServedVersion::requested(&md);
        let a = deployment(&md, &served, revision, &Platform::default());
        let b = deployment(&md, &served, revision, &Platform::default());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(service(&md, served.model_name()), service(&md, served.model_name()));
        prop_assert_eq!(hpa(&md, served.model_name()), hpa(&md, served.model_name()));

        let template = a.spec.clone().unwrap().template;
        let pod = template.spec.unwrap();
        let pod_sc = pod.security_context.unwrap();
        prop_assert_eq!(pod_sc.run_as_non_root, Some(true));
        prop_assert_eq!(pod.host_network, None);
        prop_assert_eq!(pod.host_pid, None);
        prop_assert_eq!(pod.host_ipc, None);
        prop_assert_eq!(pod.automount_service_account_token, Some(false));
        prop_assert_eq!(
            pod_sc.seccomp_profile.map(|p| p.type_),
            Some("RuntimeDefault".to_string())
        );
        // No volume at all, so certainly no hostPath.
        prop_assert!(pod.volumes.iter().flatten().all(|v| v.host_path.is_none()));
        prop_assert!(pod.init_containers.is_none() && pod.ephemeral_containers.is_none());
        for c in &pod.containers {
            let sc = c.security_context.clone().unwrap();
            prop_assert_eq!(sc.privileged, Some(false));
            prop_assert_eq!(sc.allow_privilege_escalation, Some(false));
            prop_assert_eq!(sc.run_as_non_root, Some(true));
            prop_assert_ne!(sc.run_as_user, Some(0));
            prop_assert_eq!(
                sc.seccomp_profile.map(|p| p.type_),
                Some("RuntimeDefault".to_string())
            );
            prop_assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
            prop_assert!(c.ports.iter().flatten().all(|p| p.host_port.is_none()));
        }
        let labels = template.metadata.unwrap().labels.unwrap();
        prop_assert_eq!(labels.get(labels::INSTANCE).map(String::as_str), Some("m"));
        prop_assert_eq!(labels.get(labels::MANAGED_BY).map(String::as_str), Some(labels::MANAGER));
        let revision_label = revision.to_string();
        prop_assert_eq!(labels.get(labels::REVISION), Some(&revision_label));
        prop_assert_eq!(revision_of(&a), Some(revision));
        // The selector always matches the pods.
        for (k, v) in a.spec.unwrap().selector.match_labels.unwrap() {
            prop_assert_eq!(labels.get(&k), Some(&v));
        }
    }
}
