//! The model servers teams deploy, from `config/examples/`, on the real
//! control plane (issue 25): each example is applied as users do and the
//! Deployment the operator makes is checked field by field against it; GPUs
//! are a kwok node's allocatable, enforced by the real scheduler; Pod
//! Security Admission is the real API server's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::gateway::{install_gateway_api, routes};
use support::servers::{BoundClaim, apply_example, apply_json, assert_within, gpu_node};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn template_of(d: &Deployment) -> Value {
    serde_json::to_value(d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()).unwrap()
}

/// The fields of `spec.server` that are the pod's.
const POD_FIELDS: &[&str] = &[
    "serviceAccountName",
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "terminationGracePeriodSeconds",
    "volumes",
];

/// The fields of `spec.server` that are the model container's.
const CONTAINER_FIELDS: &[&str] = &[
    "image",
    "command",
    "args",
    "resources",
    "startupProbe",
    "readinessProbe",
    "livenessProbe",
    "securityContext",
    "volumeMounts",
];

fn assert_carries(server: &Value, pod: &Value) {
    for field in POD_FIELDS {
        if let Some(value) = server.get(*field) {
            assert_within(value, &pod[field], &format!("pod.{field}"));
        }
    }
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "model-server");
    for field in CONTAINER_FIELDS {
        if let Some(value) = server.get(*field) {
            assert_within(value, &container[field], &format!("container.{field}"));
        }
    }
    // The operator's MODEL_* variables come first, then the user's, as
    // written.
    let users_env: Vec<Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["name"].as_str().unwrap().starts_with("MODEL_"))
        .cloned()
        .collect();
    if let Some(env) = server.get("env") {
        assert_within(env, &Value::Array(users_env), "container.env");
    }
    let mut ports = vec![json!({"name": "http", "containerPort": server["port"]})];
    ports.extend(server["ports"].as_array().into_iter().flatten().cloned());
    assert_within(&Value::Array(ports), &container["ports"], "container.ports");
}

#[tokio::test]
async fn vllm_on_two_gpus_runs_as_written_in_a_baseline_namespace() {
    let s = Setup::new("srv-vllm").await;
    let ns = s.ns.name.as_str();
    let labelled = kubectl(&[
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=baseline",
        "--overwrite",
    ]);
    assert!(labelled.status.success());
    gpu_node();
    let _weights = BoundClaim::add(ns, "llama-weights");
    for object in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "vllm"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token-secret"},
               "stringData": {"token": "hf_test"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-credentials"},
               "type": "kubernetes.io/dockerconfigjson",
               "stringData": {".dockerconfigjson": "{\"auths\":{}}"}}),
    ] {
        apply_json(Some(ns), &object);
    }

    let example = apply_example(ns, "vllm.yaml");
    let md = s.wait_named("llama", "Healthy", healthy_at(1)).await;
    assert_eq!(md.status.as_ref().unwrap().ready_replicas, 1);

    let d = s.deployments.get("llama").await.unwrap();
    let pod = template_of(&d);
    let server = &example["spec"]["server"];
    assert_carries(server, &pod);
    // The operator's parts: the memory-backed shm of the size asked for.
    assert_within(
        &json!([{"name": "mlops-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]),
        &json!([pod["volumes"][1]]),
        "pod.volumes",
    );
    assert!(
        pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "mlops-shm", "mountPath": "/dev/shm"}))
    );
    // Root was asked for: nothing the operator added says otherwise.
    assert!(pod["securityContext"].get("runAsNonRoot").is_none());
    assert_eq!(
        pod["containers"][0]["securityContext"]["runAsNonRoot"],
        false
    );

    // The real scheduler put it on the node with the GPUs.
    let pods = Api::<Pod>::namespaced(s.client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=llama"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 1);
    let node = pods.items[0]
        .spec
        .as_ref()
        .unwrap()
        .node_name
        .clone()
        .unwrap();
    let node = Api::<k8s_openapi::api::core::v1::Node>::all(s.client.clone())
        .get(&node)
        .await
        .unwrap();
    let gpus = node.status.unwrap().allocatable.unwrap()["nvidia.com/gpu"]
        .0
        .clone();
    assert!(gpus.parse::<u32>().unwrap() >= 2, "{gpus} GPUs");
}

#[tokio::test]
async fn triton_exposes_its_three_ports_on_every_service() {
    install_gateway_api();
    let s = Setup::new("srv-triton").await;
    let ns = s.ns.name.as_str();
    gpu_node();
    let _repository = BoundClaim::add(ns, "triton-model-repository");
    let example = apply_example(ns, "triton.yaml");
    s.wait_named("triton", "Healthy", healthy_at(1)).await;

    let d = s.deployments.get("triton").await.unwrap();
    let pod = template_of(&d);
    assert_carries(&example["spec"]["server"], &pod);
    // model.storage pvc://: the claim read-only, MODEL_PATH, no download.
    assert!(pod.get("initContainers").is_none());
    assert!(pod["volumes"].as_array().unwrap().contains(&json!({
        "name": "mlops-model",
        "persistentVolumeClaim": {"claimName": "triton-model-repository", "readOnly": true}
    })));
    let container = &pod["containers"][0];
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "MODEL_PATH", "value": "/mnt/models/models"}))
    );
    let triton_ports = json!([
        {"name": "http", "port": 8000, "targetPort": "http"},
        {"name": "grpc", "port": 8001, "targetPort": "grpc"},
        {"name": "metrics", "port": 8002, "targetPort": "metrics"},
    ]);
    let ports = |svc: &Service| serde_json::to_value(&svc.spec.as_ref().unwrap().ports).unwrap();
    assert_within(
        &triton_ports,
        &ports(&s.services.get("triton").await.unwrap()),
        "triton",
    );

    // A canary through a Gateway API route: the stable and canary
    // Services carry the same three ports.
    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "triton", "labels": {"mlops.dev/model-deployment": "triton"}},
        "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": [
            {"name": "triton-stable", "port": 8000, "weight": 100},
            {"name": "triton-canary", "port": 8000, "weight": 0}]}]},
    });
    routes(&s.client, ns)
        .patch(
            "triton",
            &kube::api::PatchParams::apply("user"),
            &kube::api::Patch::Apply(&route),
        )
        .await
        .unwrap();
    s.patch_spec(
        "triton",
        json!({"rollout": {"strategy": "Canary", "canary": {
            "steps": [{"setWeight": 50}, {"pause": {}}],
            "trafficRouting": {"gatewayAPI": {"httpRoute": "triton"}}}}}),
    )
    .await;
    for name in ["triton-stable", "triton-canary"] {
        let svc = wait_for(&s.services, name, "exist", TIMEOUT, |_: &Service| true).await;
        assert_within(&triton_ports, &ports(&svc), name);
        assert_eq!(svc.owner_references()[0].name, "triton");
    }
}

#[tokio::test]
async fn torchserve_runs_as_written() {
    let s = Setup::new("srv-torchserve").await;
    let ns = s.ns.name.as_str();
    gpu_node();
    let _store = BoundClaim::add(ns, "torchserve-model-store");
    apply_json(
        Some(ns),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "torchserve-config"},
                "data": {"config.properties": "inference_address=http://0.0.0.0:8080\n"}}),
    );
    let example = apply_example(ns, "torchserve.yaml");
    s.wait_named("resnet", "Healthy", healthy_at(1)).await;
    let pod = template_of(&s.deployments.get("resnet").await.unwrap());
    assert_carries(&example["spec"]["server"], &pod);
    let ports =
        serde_json::to_value(&s.services.get("resnet").await.unwrap().spec.unwrap().ports).unwrap();
    assert_within(
        &json!([{"name": "http", "port": 80}, {"name": "management", "port": 8081},
                {"name": "metrics", "port": 8082}]),
        &ports,
        "resnet",
    );
}

#[tokio::test]
async fn every_server_example_is_accepted_as_written() {
    for example in [
        "vllm.yaml",
        "triton.yaml",
        "mlserver.yaml",
        "torchserve.yaml",
    ] {
        assert_example_accepted("srv-example", &format!("config/examples/{example}")).await;
    }
}

/// The storage initializer the platform's admin chose (chart value
/// `modelFetch.image`); kwok runs no image, the pod lifecycle is simulated.
const FETCH_IMAGE: &str = "kserve/storage-initializer:v0.15.2";

#[tokio::test]
async fn an_s3_model_is_downloaded_before_the_server_and_a_failing_download_rolls_back() {
    let s = Setup::builder("srv-fetch")
        .args(&["--model-fetch-image", FETCH_IMAGE])
        .start()
        .await;
    let ns = s.ns.name.as_str();
    apply_json(
        Some(ns),
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials"},
                "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}}),
    );
    let example = apply_example(ns, "mlserver.yaml");
    let name = "income-classifier";
    s.wait_named(name, "Healthy", healthy_at(1)).await;

    let pod = template_of(&s.deployments.get(name).await.unwrap());
    assert_carries(&example["spec"]["server"], &pod);
    let fetch = &pod["initContainers"][0];
    assert_within(
        &json!({"name": "mlops-model-fetch", "image": FETCH_IMAGE,
                "args": ["s3://models/income-classifier/0.3.1", "/mnt/models"],
                "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
                "volumeMounts": [{"name": "mlops-model", "mountPath": "/mnt/models"}]}),
        fetch,
        "the download",
    );
    assert!(pod["volumes"].as_array().unwrap().contains(&json!({
        "name": "mlops-model", "emptyDir": {"sizeLimit": "2Gi"}
    })));
    let container = &pod["containers"][0];
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "MODEL_PATH", "value": "/mnt/models"}))
    );
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .contains(&json!({
                "name": "mlops-model", "mountPath": "/mnt/models", "readOnly": true
            }))
    );

    // A download that keeps failing (a wrong URI, a 403) fails the
    // revision as early as a crash-looping server, and it is rolled back.
    s.patch_spec(
        name,
        json!({"model": {"version": "0.3.2", "uri": "s3://models/income-classifier/0.3.2"},
               "podMetadata": {"labels": {"mlops.dev/simulate": "init-crash-loop"}}}),
    )
    .await;
    let m = s
        .wait_named(name, "revision 2 rolled back", rolled_back(2))
        .await;
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "InitContainerFailed", "{entry:?}");
    assert!(entry.message.contains("mlops-model-fetch"), "{entry:?}");
    wait_for(&s.deployments, name, "run revision 1", TIMEOUT, |d| {
        model_operator::resources::revision_of(d) == Some(1)
    })
    .await;
}

/// A change of the pod alone (service account, volume, port) is a new
/// revision that rolls out, and a rollback puts the old pod back exactly
/// (issue 25): the revision snapshot holds the whole pod.
#[tokio::test]
async fn a_pod_only_change_is_a_revision_and_a_rollback_restores_the_pod_exactly() {
    let s = Setup::new("srv-pod-revision").await;
    let ns = s.ns.name.as_str();
    for sa in ["reader", "writer"] {
        apply_json(
            Some(ns),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}),
        );
    }
    s.create(rolling(
        json!({"model": {"version": "1"}, "server": {
            "serviceAccountName": "reader",
            "ports": [{"name": "metrics", "containerPort": 9100}],
            "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}],
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}}),
        600,
    ))
    .await;
    s.wait("revision 1 stable", healthy_at(1)).await;
    let first = template_of(&s.wait_template(1).await);

    // Only the pod changes (the model version does not), and it crash-loops:
    // revision 2 rolls out, fails, and revision 1's pod comes back.
    s.set(json!({
        "podMetadata": {"labels": {"mlops.dev/simulate": "crash-loop"}},
        "server": {"serviceAccountName": "writer",
                   "ports": [{"name": "metrics", "containerPort": 9200}],
                   "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "2Gi"}}]}}))
        .await;
    let m = s.wait("revision 2 rolled back", rolled_back(2)).await;
    assert_eq!(history_entry(&m, 2).unwrap().reason, "CrashLoopBackOff");
    // Revision 2 holds the changed pod, and it did roll out: the
    // Deployment went to a second template and back to the first (its
    // own revision counter is at 3).
    let snapshot =
        Api::<k8s_openapi::api::apps::v1::ControllerRevision>::namespaced(s.client.clone(), ns)
            .get("m-r2")
            .await
            .unwrap();
    let served = &snapshot.data.unwrap().0;
    assert_eq!(served["server"]["serviceAccountName"], "writer");
    assert_eq!(served["model"]["version"], "1");
    // The Deployment controller numbers the template it rolls back to
    // after the operator wrote it: wait for both.
    let restored = wait_for(
        &s.deployments,
        "m",
        "run revision 1 again, as the Deployment's third template",
        TIMEOUT,
        |d: &Deployment| {
            model_operator::resources::revision_of(d) == Some(1)
                && d.annotations()
                    .get("deployment.kubernetes.io/revision")
                    .map(String::as_str)
                    == Some("3")
        },
    )
    .await;
    assert_eq!(
        template_of(&restored),
        first,
        "the rollback restores revision 1's pod exactly"
    );
}

/// What Kubernetes service discovery makes of a pod label's name.
fn meta_label(label: &str) -> String {
    let sanitized: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("__meta_kubernetes_pod_label_{sanitized}")
}

/// The discovery labels of `pods` in `podmonitor/<file>.json`, each with
/// the loopback `address` standing in for its `metrics` port; removed on
/// drop.
struct DiscoveredPods(std::path::PathBuf);

impl DiscoveredPods {
    fn write(file: &str, pods: &[Pod], address: &str) -> Self {
        let groups: Vec<Value> = pods
            .iter()
            .map(|pod| {
                let mut labels = serde_json::Map::new();
                for (k, v) in pod.labels() {
                    labels.insert(meta_label(k), json!(v));
                }
                labels.insert("pod".into(), json!(pod.name_any()));
                json!({"targets": [address], "labels": labels})
            })
            .collect();
        let dir = repo_root().join(".local/monitoring/podmonitor");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{file}.json"));
        let tmp = dir.join(format!(".{file}.json.tmp"));
        std::fs::write(&tmp, Value::Array(groups).to_string()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        Self(path)
    }
}

impl Drop for DiscoveredPods {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The PodMonitor example's relabelings in Prometheus' own words.
fn podmonitor_relabelings() -> Vec<Value> {
    let file = repo_root().join("config/examples/podmonitor.yaml");
    let monitor: Value = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"source_labels": r["sourceLabels"], "target_label": r["targetLabel"]}))
        .collect()
}

/// The model_version the gates compare by comes from the pod's label
/// through the PodMonitor example's relabelings, run by the real
/// Prometheus on the discovery labels of the operator's real pods.
#[tokio::test]
async fn the_podmonitor_example_gives_every_series_its_pods_model_version() {
    let config = repo_root().join("hack/monitoring/prometheus.yml");
    let config: Value = serde_yaml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let job = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "podmonitor")
        .expect("the podmonitor job");
    let relabel: Vec<Value> = job["relabel_configs"].as_array().unwrap()[1..].to_vec();
    assert_eq!(
        relabel,
        podmonitor_relabelings(),
        "the job runs the example's relabelings"
    );

    let s = Setup::new("srv-podmonitor").await;
    let exporter = Exporter::start("model_requests_total 7\n").await;
    let address = format!("127.0.0.1:{}", exporter.port);
    let pods = Api::<Pod>::namespaced(s.client.clone(), &s.ns.name);
    let by_version = |version: &str| {
        format!(
            "count(model_requests_total{{job=\"podmonitor\", model_deployment=\"m\", \
             model_version=\"{version}\", pod=~\"m-.*\", model_revision!=\"\"}})"
        )
    };
    let mut discovered = Vec::new();
    for (revision, version) in [(1, "1.0"), (2, "2.0")] {
        if revision == 1 {
            s.create(rolling(version_spec(version), 600)).await;
        } else {
            s.set(version_spec(version)).await;
        }
        s.wait("healthy", healthy_at(revision)).await;
        let running = pods
            .list(&ListParams::default().labels(&format!("mlops.dev/revision={revision}")))
            .await
            .unwrap()
            .items;
        assert_eq!(running.len(), 2);
        discovered.push(DiscoveredPods::write(&s.ns.name, &running, &address));
        prometheus_sees(&by_version(version), Some(2.0), TIMEOUT).await;
    }
    drop(discovered);
}

fn version_spec(version: &str) -> Value {
    json!({"model": {"version": version}})
}
