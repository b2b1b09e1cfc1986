use super::*;
use serde_json::json;

const PSA: &str = "pods \"m-7d9f8c6b5-x2k4q\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"model-server\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"model-server\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"model-server\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"model-server\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";

/// (reason, message); `None`: may clear, no verdict.
type Expected = Option<(&'static str, &'static str)>;

#[test]
fn table() {
    // (what, FailedCreate message, expected (reason, message); None: may clear)
    let cases: Vec<(&str, String, Expected)> = vec![
        (
            "Pod Security",
            PSA.to_string(),
            Some(("PodsForbidden", "pods refused by Pod Security \"restricted\": allowPrivilegeEscalation != false (container model-server), unrestricted capabilities (container model-server), runAsNonRoot != true (container model-server), seccompProfile (container model-server)")),
        ),
        (
            "Pod Security, a check without containers",
            "pods \"m-1-a\" is forbidden: violates PodSecurity \"baseline:v1.30\": host namespaces (hostNetwork=true)".into(),
            Some(("PodsForbidden", "pods refused by Pod Security \"baseline\": host namespaces")),
        ),
        (
            "Pod Security, two containers",
            "pods \"m-1-a\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true (containers \"a\", \"b\" must set securityContext.runAsNonRoot=true)".into(),
            Some(("PodsForbidden", "pods refused by Pod Security \"restricted\": runAsNonRoot != true (containers a, b)")),
        ),
        (
            "LimitRange",
            "pods \"m-589fbcbb87-7bbfj\" is forbidden: maximum cpu usage per Container is 1, but limit is 2".into(),
            Some(("PodsForbidden", "pods refused by a LimitRange: maximum cpu usage per Container is 1, but limit is 2")),
        ),
        (
            "LimitRange, two constraints",
            "pods \"m-1-a\" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, minimum memory usage per Container is 64Mi, but request is 1Mi]".into(),
            Some(("PodsForbidden", "pods refused by a LimitRange: maximum cpu usage per Container is 1, but limit is 2, minimum memory usage per Container is 64Mi, but request is 1Mi")),
        ),
        (
            "LimitRange ratio",
            "pods \"m-1-a\" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000".into(),
            Some(("PodsForbidden", "pods refused by a LimitRange: cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000")),
        ),
        (
            "quota one pod cannot fit",
            "pods \"m-589fbcbb87-rf7w4\" is forbidden: exceeded quota: team-quota, requested: requests.cpu=2, used: requests.cpu=0, limited: requests.cpu=1".into(),
            Some(("QuotaExceeded", "pods refused by ResourceQuota team-quota: exceeded requests.cpu (one pod requests 2, the quota allows 1)")),
        ),
        (
            "quota, several resources, units",
            "pods \"m-1-a\" is forbidden: exceeded quota: q, requested: limits.memory=2Gi,requests.cpu=500m, used: limits.memory=1Gi,requests.cpu=0, limited: limits.memory=1536Mi,requests.cpu=1".into(),
            Some(("QuotaExceeded", "pods refused by ResourceQuota q: exceeded limits.memory (one pod requests 2Gi, the quota allows 1536Mi)")),
        ),
        (
            "quota full for now: the old pods hold it",
            "pods \"m-1-a\" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=1, limited: pods=2,requests.cpu=1".into(),
            None,
        ),
        (
            "quota needs a request",
            "pods \"m-1-a\" is forbidden: failed quota: team-quota: must specify limits.cpu for: model-server; limits.memory for: model-server".into(),
            Some(("QuotaExceeded", "pods refused by ResourceQuota team-quota: must specify limits.cpu for: model-server; limits.memory for: model-server")),
        ),
        (
            "ValidatingAdmissionPolicy",
            "pods \"m-1-a\" is forbidden: ValidatingAdmissionPolicy 'no-latest' with binding 'no-latest' denied request: images must be pinned".into(),
            Some(("PodsForbidden", "pods refused by ValidatingAdmissionPolicy no-latest: images must be pinned")),
        ),
        (
            "webhook",
            "admission webhook \"validate.kyverno.svc-fail\" denied the request: policy require-labels: label team is required".into(),
            Some(("PodsForbidden", "pods refused by admission webhook validate.kyverno.svc-fail: policy require-labels: label team is required")),
        ),
        (
            "invalid pod",
            "Pod \"m-1-a\" is invalid: spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1".into(),
            Some(("PodsForbidden", "pods refused as invalid: spec.containers[0].resources.requests: Invalid value: 2: must be less than or equal to cpu limit of 1")),
        ),
        (
            "webhook unreachable",
            "Internal error occurred: failed calling webhook \"v.example.com\": context deadline exceeded".into(),
            None,
        ),
        (
            "ServiceAccount not there yet",
            "pods \"m-1-a\" is forbidden: error looking up service account ns/default: serviceaccount \"default\" not found".into(),
            None,
        ),
        (
            "namespace terminating",
            "pods \"m-1-a\" is forbidden: unable to create new content in namespace ns because it is being terminated".into(),
            None,
        ),
        ("empty", String::new(), None),
    ];
    for (what, message, want) in cases {
        let got = classify(&message);
        assert_eq!(
            got.as_ref().map(|f| (f.reason, f.message.as_str())),
            want,
            "{what}"
        );
    }
}

#[test]
fn foreign_text_is_bounded_and_plain() {
    let long = format!(
        "admission webhook \"{}\" denied the request: {}\u{7}\n\"quoted\"",
        "w".repeat(300),
        "because ".repeat(10_000)
    );
    let f = classify(&long).unwrap();
    assert!(f.message.len() < 300, "{}", f.message.len());
    assert!(!f.message.contains('"') && !f.message.contains('\u{7}'));

    let checks: Vec<String> = (0..100)
        .map(|i| format!("check{i} (container \"c{i}\" must set x)"))
        .collect();
    let psa = format!(
        "pods \"m-1-a\" is forbidden: violates PodSecurity \"restricted:latest\": {}",
        checks.join(", ")
    );
    let f = classify(&psa).unwrap();
    assert!(
        f.message.ends_with("check5 (container c5), and 94 more"),
        "{}",
        f.message
    );
}

fn deployment(generation: i64, observed: i64, message: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "m", "generation": generation},
        "status": {"observedGeneration": observed, "conditions": [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"},
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message},
        ]},
    }))
    .unwrap()
}

fn pod(hash: &str, revision: &str) -> WatchedPod {
    serde_json::from_value(json!({"metadata": {"name": "p", "labels": {
        "pod-template-hash": hash, "mlops.dev/revision": revision}}}))
    .unwrap()
}

#[test]
fn only_the_current_revisions_replicaset() {
    let limit =
        "pods \"m-abc-x1\" is forbidden: maximum cpu usage per Container is 1, but limit is 2";
    let cases = [
        (
            "no pods: the new ReplicaSet's",
            deployment(2, 2, limit),
            vec![],
            true,
        ),
        (
            "its own pods",
            deployment(2, 2, limit),
            vec![pod("abc", "2")],
            true,
        ),
        (
            "the ReplicaSet of another revision",
            deployment(2, 2, limit),
            vec![pod("abc", "1"), pod("def", "2")],
            false,
        ),
        (
            "not seen the template yet",
            deployment(3, 2, limit),
            vec![],
            false,
        ),
        (
            "a failure that may clear",
            deployment(
                2,
                2,
                "pods \"m-abc-x1\" is forbidden: unable to create new content in namespace ns because it is being terminated",
            ),
            vec![],
            false,
        ),
    ];
    for (what, d, pods, refused) in cases {
        assert_eq!(failure_of(&d, &pods, 2).is_some(), refused, "{what}");
    }
    let healthy: Deployment = serde_json::from_value(
        json!({"metadata": {"name": "m", "generation": 1}, "status": {"observedGeneration": 1}}),
    )
    .unwrap();
    assert_eq!(failure_of(&healthy, &[], 1), None);
}
