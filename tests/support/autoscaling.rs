//! The metrics APIs the real HPA controller reads (hack/metrics-api.sh:
//! prometheus-adapter behind kube-apiserver's aggregation layer, fed by the
//! local Prometheus): load a test sets per pod or per queue, reads through
//! the aggregator as any client makes them, and the adapter's audit log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

use super::{Exporter, ScrapeTarget, repo_root};

/// The ServiceAccount kube-controller-manager's HPA controller acts as
/// (`--use-service-account-credentials`, hack/kwok/kwokctl.yaml).
pub const HPA_CONTROLLER: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";

/// An exporter the local Prometheus scrapes, with the load of one
/// namespace: a value per metric that every live pod of the namespace
/// reports under its own `pod` label (what a model server's exporter says
/// about itself; Pods metrics), and series of the namespace with labels of
/// their own (a queue's length; External metrics). The pod list is
/// refreshed twice a second, so pods the HPA adds report the same load.
pub struct LoadExporter {
    load: Arc<Mutex<Load>>,
    task: tokio::task::JoinHandle<()>,
    _target: ScrapeTarget,
}

#[derive(Default)]
struct Load {
    per_pod: BTreeMap<String, f64>,
    /// (name, labels other than the namespace's, as `,k="v"...`): value.
    series: BTreeMap<(String, String), f64>,
}

impl LoadExporter {
    pub async fn start(client: &Client, namespace: &str) -> Self {
        let exporter = Exporter::start("").await;
        let target = ScrapeTarget::add(
            &format!("load-{namespace}"),
            exporter.port,
            serde_json::json!({}),
        );
        let load = Arc::new(Mutex::new(Load::default()));
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let (shared, ns) = (load.clone(), namespace.to_string());
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    let live: Vec<String> = list
                        .items
                        .into_iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter_map(|p| p.metadata.name)
                        .collect();
                    let text = shared
                        .lock()
                        .map(|load| load.exposition(&ns, &live))
                        .unwrap_or_default();
                    exporter.set(&text);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self {
            load,
            task,
            _target: target,
        }
    }

    /// From now on every live pod reports `value` for `metric`.
    pub fn per_pod(&self, metric: &str, value: f64) {
        if let Ok(mut load) = self.load.lock() {
            load.per_pod.insert(metric.to_string(), value);
        }
    }

    /// The namespace's series `metric{labels}` is `value` from now on.
    pub fn series(&self, metric: &str, labels: &[(&str, &str)], value: f64) {
        let labels: String = labels
            .iter()
            .map(|(k, v)| format!(",{k}=\"{v}\""))
            .collect();
        if let Ok(mut load) = self.load.lock() {
            load.series.insert((metric.to_string(), labels), value);
        }
    }
}

impl Load {
    fn exposition(&self, namespace: &str, pods: &[String]) -> String {
        let mut text = String::new();
        for (metric, value) in &self.per_pod {
            for pod in pods {
                text += &format!("{metric}{{namespace=\"{namespace}\",pod=\"{pod}\"}} {value}\n");
            }
        }
        for ((metric, labels), value) in &self.series {
            text += &format!("{metric}{{namespace=\"{namespace}\"{labels}}} {value}\n");
        }
        text
    }
}

impl Drop for LoadExporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// GETs `path` from the API server (an aggregated API's path goes through
/// the aggregator to its server): the JSON answer, or the error.
pub async fn get_raw(client: &Client, path: &str) -> Result<Value, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}: {text}"))
}

/// The adapter's audit log (hack/metrics-api/audit-policy.yaml): every
/// request for a custom or external metric, with who made it and the
/// answer's status.
pub fn adapter_audit() -> Vec<Value> {
    let cluster = std::env::var("CLUSTER_NAME").unwrap_or_else(|_| "model-operator".into());
    let path = repo_root()
        .join(".local/metrics-api")
        .join(cluster)
        .join("audit.log");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} ({e}): is `make metrics-api` running?", path.display()))
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether `user` read metric `metric` of `namespace` from the adapter and
/// was answered 200: in the custom metrics API a Pods metric is the
/// subresource of `pods`, in the external one the resource itself.
pub fn adapter_served(user: &str, namespace: &str, metric: &str) -> bool {
    adapter_audit().iter().any(|e| {
        let object = &e["objectRef"];
        e["user"]["username"] == user
            && object["namespace"] == namespace
            && (object["subresource"] == metric || object["resource"] == metric)
            && e["responseStatus"]["code"] == 200
    })
}
