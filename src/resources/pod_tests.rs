//! The pod template from `spec.server` and `spec.model.storage`: what the
//! user wrote passes through, the operator's parts are added, and the
//! restricted default gives way only to what the user set.

use k8s_openapi::api::core::v1::{PodSpec, Service};
use serde_json::{Value, json};

use super::*;
use crate::api::{ModelDeployment, ServedVersion};
use crate::fixtures;
use crate::rollout::revision::served_hash;

fn md(spec: Value) -> ModelDeployment {
    fixtures::md().uid("u-1").generation(1).spec(spec).build()
}

fn pod(md: &ModelDeployment, platform: &Platform) -> PodSpec {
    let d = deployment(md, &ServedVersion::requested(md), 1, platform);
    d.spec.unwrap().template.spec.unwrap()
}

fn json_of<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

const FETCH: &str = "kserve/storage-initializer:v0.15.2";

fn with_fetch() -> Platform {
    Platform {
        fetch_image: Some(FETCH.into()),
    }
}

#[test]
fn a_spec_without_pod_fields_makes_the_pod_it_always_made() {
    let pod = json_of(&pod(
        &md(json!({"server": {"image": "srv:1"}})),
        &Platform::default(),
    ));
    let keys: Vec<&str> = pod
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "automountServiceAccountToken",
            "containers",
            "enableServiceLinks",
            "securityContext"
        ]
    );
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let container = &pod["containers"][0];
    let keys: Vec<&str> = container
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "env",
            "image",
            "name",
            "ports",
            "readinessProbe",
            "securityContext"
        ]
    );
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
               "privileged": false, "runAsNonRoot": true,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
}

#[test]
fn a_vllm_pod_passes_through_field_by_field() {
    let server = json!({
        "image": "vllm/vllm-openai:v0.11.0",
        "port": 8000,
        "ports": [{"name": "metrics", "containerPort": 8001}],
        "args": ["--model", "/models/llama", "--tensor-parallel-size", "2"],
        "envFrom": [{"secretRef": {"name": "hf-token"}}],
        "startupProbe": {"httpGet": {"path": "/health", "port": "http"},
                         "periodSeconds": 10, "failureThreshold": 60},
        "securityContext": {"runAsUser": 0},
        "volumeMounts": [{"name": "models", "mountPath": "/models"}],
        "shmSize": "16Gi",
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "llama"}}],
        "serviceAccountName": "vllm",
        "imagePullSecrets": [{"name": "registry"}],
        "runtimeClassName": "nvidia",
        "priorityClassName": "inference",
        "terminationGracePeriodSeconds": 120,
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "gpu", "operator": "In", "values": ["h100"]}]}]}}},
        "resources": {"limits": {"nvidia.com/gpu": "2"}},
    });
    let spec = pod(&md(json!({"server": server})), &Platform::default());
    let pod = json_of(&spec);
    for field in [
        "serviceAccountName",
        "imagePullSecrets",
        "runtimeClassName",
        "priorityClassName",
        "terminationGracePeriodSeconds",
        "affinity",
    ] {
        assert_eq!(pod[field], server[field], "{field}");
    }
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "models", "persistentVolumeClaim": {"claimName": "llama"}},
            {"name": "mlops-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        ])
    );
    let c = &pod["containers"][0];
    for field in ["args", "envFrom", "startupProbe", "resources"] {
        assert_eq!(c[field], server[field], "{field}");
    }
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "models", "mountPath": "/models"},
               {"name": "mlops-shm", "mountPath": "/dev/shm"}])
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8000, "protocol": "TCP"},
               {"name": "metrics", "containerPort": 8001, "protocol": "TCP"}])
    );
    // Root was asked for: no default says runAsNonRoot, the rest stays.
    assert_eq!(c["securityContext"]["runAsUser"], 0);
    assert!(c["securityContext"].get("runAsNonRoot").is_none());
    assert!(pod["securityContext"].get("runAsNonRoot").is_none());
    assert_eq!(
        c["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
}

#[test]
fn what_the_user_sets_replaces_the_default_field_by_field() {
    let cases = [
        (
            json!({"privileged": true}),
            json!({"privileged": true, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true,
                   "seccompProfile": {"type": "RuntimeDefault"}}),
        ),
        (
            json!({"capabilities": {"add": ["IPC_LOCK"]}}),
            json!({"allowPrivilegeEscalation": false, "privileged": false,
                   "capabilities": {"add": ["IPC_LOCK"]}, "runAsNonRoot": true,
                   "seccompProfile": {"type": "RuntimeDefault"}}),
        ),
        (
            json!({"runAsUser": 0, "runAsNonRoot": true}),
            json!({"allowPrivilegeEscalation": false, "privileged": false,
                   "capabilities": {"drop": ["ALL"]}, "runAsUser": 0, "runAsNonRoot": true,
                   "seccompProfile": {"type": "RuntimeDefault"}}),
        ),
        (
            json!({"runAsUser": 1000, "readOnlyRootFilesystem": true}),
            json!({"allowPrivilegeEscalation": false, "privileged": false,
                   "capabilities": {"drop": ["ALL"]}, "runAsUser": 1000, "runAsNonRoot": true,
                   "readOnlyRootFilesystem": true, "seccompProfile": {"type": "RuntimeDefault"}}),
        ),
    ];
    for (user, want) in cases {
        let md = md(json!({"server": {"image": "s:1", "securityContext": user}}));
        let pod = json_of(&pod(&md, &Platform::default()));
        assert_eq!(pod["containers"][0]["securityContext"], want, "{user}");
    }
}

#[test]
fn init_and_sidecar_containers_get_the_restricted_default_under_their_own() {
    let md = md(json!({"server": {"image": "s:1", "initContainers": [
        {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"},
        {"name": "root", "image": "r:1", "securityContext": {"runAsUser": 0}},
    ]}}));
    let pod = json_of(&pod(&md, &Platform::default()));
    let init = &pod["initContainers"];
    assert_eq!(init[0]["name"], "proxy");
    assert_eq!(init[0]["restartPolicy"], "Always");
    assert_eq!(init[0]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(init[1]["securityContext"]["runAsUser"], 0);
    assert!(init[1]["securityContext"].get("runAsNonRoot").is_none());
}

#[test]
fn a_pvc_uri_is_mounted_read_only_without_a_download() {
    let md = md(
        json!({"model": {"version": "1", "uri": "pvc://weights/llama/3", "storage": {}},
                       "server": {"image": "s:1"}}),
    );
    let pod = json_of(&pod(&md, &with_fetch()));
    assert!(pod.get("initContainers").is_none());
    assert_eq!(
        pod["volumes"],
        json!([{"name": "mlops-model",
                "persistentVolumeClaim": {"claimName": "weights", "readOnly": true}}])
    );
    let c = &pod["containers"][0];
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "mlops-model", "mountPath": "/mnt/models", "readOnly": true}])
    );
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "MODEL_PATH", "value": "/mnt/models/llama/3"}))
    );
}

#[test]
fn a_download_runs_the_platforms_initializer_first() {
    let md = md(json!({
        "model": {"version": "1", "uri": "s3://bucket/llama",
                  "storage": {"sizeLimit": "40Gi", "credentialsSecretName": "s3-creds"}},
        "server": {"image": "s:1", "initContainers": [{"name": "warm", "image": "w:1"}]}}));
    let pod = json_of(&pod(&md, &with_fetch()));
    let fetch = &pod["initContainers"][0];
    assert_eq!(fetch["name"], "mlops-model-fetch");
    assert_eq!(fetch["image"], FETCH);
    assert_eq!(fetch["args"], json!(["s3://bucket/llama", "/mnt/models"]));
    assert_eq!(
        fetch["envFrom"],
        json!([{"secretRef": {"name": "s3-creds", "optional": false}}])
    );
    assert_eq!(fetch["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["initContainers"][1]["name"], "warm");
    assert_eq!(
        pod["volumes"],
        json!([{"name": "mlops-model", "emptyDir": {"sizeLimit": "40Gi"}}])
    );
    let c = &pod["containers"][0];
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "MODEL_PATH", "value": "/mnt/models"}))
    );
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);

    let mut cached = md.clone();
    cached.spec.model.storage.as_mut().unwrap().size_limit = None;
    cached.spec.model.storage.as_mut().unwrap().cache_claim_name = Some("cache".into());
    let cached_pod = json_of(&self::pod(&cached, &with_fetch()));
    assert_eq!(
        cached_pod["volumes"],
        json!([{"name": "mlops-model",
                "persistentVolumeClaim": {"claimName": "cache", "readOnly": false}}])
    );
}

#[test]
fn a_download_without_the_platforms_image_is_refused_before_anything_runs() {
    let md = md(
        json!({"model": {"version": "1", "uri": "hf://org/m", "storage": {}},
                       "server": {"image": "s:1"}}),
    );
    let refused = crate::validate::platform(&md.spec, &Platform::default()).unwrap_err();
    assert!(refused.contains("modelFetch.image"), "{refused}");
    assert_eq!(crate::validate::platform(&md.spec, &with_fetch()), Ok(()));
    let pvc = self::md(
        json!({"model": {"version": "1", "uri": "pvc://w", "storage": {}},
                              "server": {"image": "s:1"}}),
    );
    assert_eq!(
        crate::validate::platform(&pvc.spec, &Platform::default()),
        Ok(())
    );
}

#[test]
fn every_named_port_is_on_every_service() {
    let md = md(
        json!({"server": {"image": "tritonserver:25.01", "port": 8000, "ports": [
        {"name": "grpc", "containerPort": 8001},
        {"name": "metrics", "containerPort": 8002}]}}),
    );
    let names = |s: &Service| -> Vec<(String, i32)> {
        s.spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect()
    };
    let want = vec![
        ("http".to_string(), 80),
        ("grpc".to_string(), 8001),
        ("metrics".to_string(), 8002),
    ];
    assert_eq!(names(&service(&md, "m")), want);
    for split in route::split_services(&md, "m", Some(1), Some(2)) {
        assert_eq!(names(&split), want);
    }
}

#[test]
fn a_template_change_alone_is_a_new_revision() {
    let base = json!({"image": "s:1"});
    let hash =
        |server: Value| served_hash(&ServedVersion::requested(&md(json!({"server": server}))));
    let before = hash(base.clone());
    for change in [
        json!({"serviceAccountName": "other"}),
        json!({"volumes": [{"name": "v", "emptyDir": {}}]}),
        json!({"ports": [{"name": "grpc", "containerPort": 9000}]}),
        json!({"shmSize": "1Gi"}),
    ] {
        let mut server = base.clone();
        server
            .as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        assert_ne!(hash(server), before, "{change}");
    }
    assert_eq!(hash(base), before);
}

#[test]
fn the_canary_runs_the_same_pod_as_its_revision_would() {
    let md = md(json!({"server": {"image": "s:1", "shmSize": "1Gi",
        "serviceAccountName": "sa", "initContainers": [{"name": "proxy", "image": "p:1",
        "restartPolicy": "Always"}], "ports": [{"name": "grpc", "containerPort": 9000}]}}));
    let served = ServedVersion::requested(&md);
    let stable = deployment(&md, &served, 3, &with_fetch());
    let canary = canary_deployment(&md, &served, 3, 1, &with_fetch());
    let (stable, canary) = (stable.spec.unwrap().template, canary.spec.unwrap().template);
    // Equal, label for label: the stable Deployment adopts the canary's
    // ReplicaSet on promotion only when its template is the same.
    assert_eq!(stable, canary);
}

#[test]
fn a_revision_snapshot_holds_the_whole_pod() {
    let md = md(
        json!({"model": {"version": "1", "uri": "s3://b/m", "storage": {"sizeLimit": "1Gi"}},
        "server": {"image": "s:1", "shmSize": "1Gi", "serviceAccountName": "sa",
        "podSecurityContext": {"fsGroup": 1000},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
        "volumes": [{"name": "c", "configMap": {"name": "cfg"}}],
        "volumeMounts": [{"name": "c", "mountPath": "/etc/c"}]}}),
    );
    let served = ServedVersion::requested(&md);
    let snapshot = crate::rollout::revision::build(&md, 4, &served);
    let back = crate::rollout::revision::parse(&snapshot).expect("a snapshot parses");
    assert_eq!(back.served.as_ref(), Some(&served));
    assert_eq!(
        deployment(&md, back.served.as_ref().unwrap(), 4, &with_fetch()),
        deployment(&md, &served, 4, &with_fetch())
    );
}
