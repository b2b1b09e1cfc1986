//! Revisions whose pods the cluster refuses (a LimitRange, a ResourceQuota)
//! or cannot start (a container the kubelet cannot configure, an init
//! container that crash-loops) fail within seconds with their own reason,
//! and the stable revision keeps serving; the failed one is not retried.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{LimitRange, Pod, ResourceQuota};
use kube::Api;
use kube::api::{ListParams, PostParams};
use model_operator::api::ModelDeployment;
use serde_json::{Value, json};
use support::*;

/// How soon a refusal must be a verdict: the pods' own signal, not the
/// progress deadline (600 s here).
const WITHIN: Duration = Duration::from_secs(15);

/// `m`'s pods ask for this much CPU (requests and limits).
fn cpu(amount: &str) -> Value {
    json!({"server": {"resources": {"requests": {"cpu": amount}, "limits": {"cpu": amount}}}})
}

/// `version(..)` with `extra` merged in.
fn version_with(v: &str, simulate: Option<&str>, extra: Value) -> Value {
    let mut spec = version(v, simulate);
    merge(&mut spec, extra);
    spec
}

async fn create_in<K>(s: &Setup, object: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(s.client.clone(), &s.ns.name);
    let object: K = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

/// Revision 2 was rolled back within `WITHIN` for `reason`, its message
/// containing `says`; revision 1 still serves (the Deployment runs its
/// template, its pods are Ready) and the Deployment is not written again
/// for a minute: no retry loop.
async fn rolled_back_at_once(s: &Setup, reason: &str, says: &[&str]) -> ModelDeployment {
    let m = wait_for(&s.mds, "m", "roll revision 2 back", WITHIN, |m| {
        settled(m) && rolled_back(2)(m)
    })
    .await;
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, reason, "{entry:?}");
    let (degraded, why, message) = condition(&m, "Degraded").unwrap();
    assert_eq!((degraded.as_str(), why.as_str()), ("True", "RolledBack"));
    for part in says {
        assert!(entry.message.contains(part), "{part:?} in {entry:?}");
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert_eq!(condition(&m, "Ready").unwrap().0, "True");

    let deployment = s.wait_template(1).await;
    let pods = Api::<Pod>::namespaced(s.client.clone(), &s.ns.name);
    eventually("revision 1's 2 pods are Ready", WITHIN, || async {
        let ready = pods
            .list(&ListParams::default().labels("mlops.dev/revision=1"))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .count();
        if ready == 2 { Ok(()) } else { Err(ready) }
    })
    .await;

    let generation = deployment.metadata.generation;
    consistently(
        "the Deployment keeps its generation",
        Duration::from_secs(60),
        || async {
            let now = s.deployments.get("m").await.unwrap().metadata.generation;
            if now == generation { Ok(()) } else { Err(now) }
        },
    )
    .await;
    m
}

#[tokio::test]
async fn a_limit_range_refusal_rolls_back_at_once() {
    let s = Setup::new("rp-limit").await;
    let _: LimitRange = create_in(
        &s,
        json!({"metadata": {"name": "cpu-max"},
               "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}}),
    )
    .await;
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;

    s.set(version_with("2.0", None, cpu("2"))).await;
    rolled_back_at_once(
        &s,
        "PodsForbidden",
        &[
            "pods refused by a LimitRange",
            "maximum cpu usage per Container is 1, but limit is 2",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_quota_one_pod_cannot_fit_rolls_back_at_once() {
    let s = Setup::new("rp-quota").await;
    let quotas = Api::<ResourceQuota>::namespaced(s.client.clone(), &s.ns.name);
    let _: ResourceQuota = create_in(
        &s,
        json!({"metadata": {"name": "team-quota"}, "spec": {"hard": {"requests.cpu": "1"}}}),
    )
    .await;
    // Until the quota controller has counted the namespace, the API server
    // refuses every pod ("status unknown for quota").
    eventually("the quota is counted", WITHIN, || async {
        let q = quotas.get("team-quota").await.unwrap();
        q.status.and_then(|s| s.hard).is_some()
    })
    .await;
    s.create(rolling(version_with("1.0", None, cpu("100m")), 600))
        .await;
    s.wait("make revision 1 stable", healthy_at(1)).await;

    s.set(version_with("2.0", None, cpu("2"))).await;
    rolled_back_at_once(
        &s,
        "QuotaExceeded",
        &[
            "pods refused by ResourceQuota team-quota",
            "exceeded requests.cpu (one pod requests 2, the quota allows 1)",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_container_the_kubelet_cannot_configure_rolls_back_at_once() {
    let s = Setup::new("rp-config").await;
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;

    s.set(version("2.0", Some("create-config-error"))).await;
    rolled_back_at_once(
        &s,
        "ContainerConfigError",
        &[
            "new pods in CreateContainerConfigError",
            "a Secret or ConfigMap key the pod needs is missing (container model-server)",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_crash_looping_init_container_rolls_back_at_once() {
    let s = Setup::new("rp-init").await;
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;

    s.set(version("2.0", Some("init-crash-loop"))).await;
    rolled_back_at_once(
        &s,
        "InitContainerFailed",
        &["new pods in Init:CrashLoopBackOff (init container model-init)"],
    )
    .await;
}

/// The vLLM example (root user, issue 25) in a namespace whose Pod
/// Security Admission enforces `restricted`: its pods are refused by the
/// API server, the revision fails at once naming the violation, and the
/// restricted revision before it keeps serving.
#[tokio::test]
async fn a_pod_security_refusal_rolls_back_at_once() {
    let s = Setup::new("rp-psa").await;
    let labelled = kubectl(&[
        "label",
        "namespace",
        &s.ns.name,
        "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    ]);
    assert!(labelled.status.success());
    // Nothing set: the operator's pods are restricted, and admitted.
    s.create(rolling(version("1.0", None), 600)).await;
    s.wait("make revision 1 stable", healthy_at(1)).await;

    // What the example needs besides its pods, so that Pod Security is
    // what refuses them (a missing ServiceAccount is refused first, and is
    // a refusal that may clear).
    let _: k8s_openapi::api::core::v1::ServiceAccount =
        create_in(&s, json!({"metadata": {"name": "vllm"}})).await;
    let file = repo_root().join("config/examples/vllm.yaml");
    let example: Value = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut vllm = example["spec"].clone();
    merge(&mut vllm, json!({"replicas": 2, "model": {"name": null}}));
    s.set(vllm).await;
    rolled_back_at_once(
        &s,
        "PodsForbidden",
        &[
            "pods refused by Pod Security \"restricted\"",
            "runAsNonRoot != true",
        ],
    )
    .await;
}
