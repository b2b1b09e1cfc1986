//! What tests of real model servers need on the local cluster: a GPU node,
//! a bound claim, objects and examples applied as users do, and a check
//! that what was written is in what was made.

use serde_json::{Value, json};

use super::cluster::{kubectl, repo_root};

/// The GPU node the model-server tests share: a kwok node with 8
/// `nvidia.com/gpu`, labelled and tainted as GPU nodes are, so only pods
/// that ask for it land there. Applied by every test that needs it and
/// never deleted: tests running side by side use it together, and no other
/// test's pods tolerate its taint.
pub fn gpu_node() -> &'static str {
    const NAME: &str = "kwok-gpu-0";
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NAME, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": NAME,
                                "nvidia.com/gpu.present": "true"}},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
            "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
        },
    });
    apply_json(None, &node);
    NAME
}

/// A kwok node of one test's own with `gpus` `nvidia.com/gpu`, labelled
/// and tainted `mlops.dev/test-node=<ns>` so that only that test's pods
/// (with `own_gpu_node_placement`) land there and it alone sees its
/// capacity; deleted on drop.
pub struct OwnGpuNode(String);

impl OwnGpuNode {
    pub fn add(ns: &str, gpus: u32) -> Self {
        let name = format!("kwok-gpu-{ns}");
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                                    "mlops.dev/test-node": ns}},
            "spec": {"taints": [{"key": "mlops.dev/test-node", "value": ns, "effect": "NoSchedule"}]},
            "status": {
                "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": gpus.to_string()},
                "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": gpus.to_string()},
            },
        });
        apply_json(None, &node);
        Self(name)
    }

    /// The `spec.server` fields that put a pod on this node only.
    pub fn placement(ns: &str) -> Value {
        json!({
            "nodeSelector": {"mlops.dev/test-node": ns},
            "tolerations": [{"key": "mlops.dev/test-node", "operator": "Equal", "value": ns, "effect": "NoSchedule"}],
        })
    }
}

impl Drop for OwnGpuNode {
    fn drop(&mut self) {
        kubectl(&["delete", "node", &self.0, "--wait=false"]);
    }
}

/// A PersistentVolume bound to claim `claim` of `ns` (no provisioner runs
/// here: the volume controller binds them, the scheduler then accepts the
/// pod); the volume is deleted on drop.
pub struct BoundClaim(String);

impl BoundClaim {
    pub fn add(ns: &str, claim: &str) -> Self {
        let pv = format!("{ns}-{claim}");
        apply_json(
            None,
            &json!({
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                "spec": {"capacity": {"storage": "100Gi"},
                         "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                         "hostPath": {"path": format!("/tmp/{pv}")},
                         "claimRef": {"namespace": ns, "name": claim}},
            }),
        );
        apply_json(
            Some(ns),
            &json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
                "spec": {"accessModes": ["ReadOnlyMany"], "volumeName": pv, "storageClassName": "",
                         "resources": {"requests": {"storage": "100Gi"}}},
            }),
        );
        Self(pv)
    }
}

impl Drop for BoundClaim {
    fn drop(&mut self) {
        kubectl(&["delete", "pv", &self.0, "--wait=false"]);
    }
}

pub fn apply_json(ns: Option<&str>, object: &Value) {
    let dir = repo_root().join("target/e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!(
        "{}-{}.json",
        ns.unwrap_or("cluster"),
        object["metadata"]["name"].as_str().unwrap()
    ));
    std::fs::write(&file, object.to_string()).unwrap();
    let mut args = vec!["apply", "-f", file.to_str().unwrap()];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = kubectl(&args);
    assert!(
        out.status.success(),
        "kubectl apply {object}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn apply_example(ns: &str, example: &str) -> Value {
    let file = repo_root().join("config/examples").join(example);
    let out = kubectl(&["apply", "-n", ns, "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "kubectl apply {example}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = std::fs::read_to_string(file).unwrap();
    serde_yaml::from_str(&yaml).unwrap()
}

/// Every field of `expected` is in `actual` with the same value; `actual`
/// may hold more (the API server's defaults, the operator's own parts).
pub fn assert_within(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let at = format!("{path}.{key}");
                let found = a.get(key).unwrap_or_else(|| panic!("{at} is missing"));
                assert_within(value, found, &at);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, item) in e.iter().enumerate() {
                let at = format!("{path}[{i}]");
                let found = a.get(i).unwrap_or_else(|| panic!("{at} is missing"));
                assert_within(item, found, &at);
            }
        }
        (e, a) => assert_eq!(e, a, "{path}"),
    }
}
