//! Shared setup of the metric-gate tests: an operator with a known metrics
//! port, a test exporter scraped by the real Prometheus, and helpers to read
//! what the real Alertmanager holds.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use model_operator::api::{ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};

use super::*;

pub const TIMEOUT: Duration = Duration::from_secs(120);
/// Where the local Alertmanager (hack/monitoring.sh) listens: port 19093,
/// or `ALERTMANAGER_PORT` as for hack/monitoring.sh.
pub fn alertmanager() -> String {
    let port = std::env::var("ALERTMANAGER_PORT").unwrap_or_else(|_| "19093".into());
    format!("http://127.0.0.1:{port}")
}

/// The query every test gates on: the exporter's error ratio of one version
/// in the test's namespace.
pub const ERROR_RATE: &str =
    r#"max(model_error_ratio{namespace="{{namespace}}",model_version="{{version}}"})"#;

pub struct Setup {
    pub client: Client,
    pub ns: TestNamespace,
    pub operator: Operator,
    pub metrics_port: u16,
    pub mds: Api<ModelDeployment>,
    pub deployments: Api<Deployment>,
    pub exporter: Exporter,
    pub _target: ScrapeTarget,
}

pub async fn setup(prefix: &str) -> Setup {
    setup_with(prefix, &[]).await
}

/// `setup` with more operator flags.
pub async fn setup_with(prefix: &str, extra: &[&str]) -> Setup {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut args = vec![
        "--metrics-addr",
        &metrics_addr,
        "--health-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let operator = Operator::start_with(&ns.name, &args);
    let exporter = Exporter::start("").await;
    let target = ScrapeTarget::add(&format!("exporter-{}", ns.name), exporter.port, json!({}));
    Setup {
        mds: Api::namespaced(client.clone(), &ns.name),
        deployments: Api::namespaced(client.clone(), &ns.name),
        client,
        ns,
        operator,
        metrics_port,
        exporter,
        _target: target,
    }
}

impl Setup {
    /// The exporter serves these error ratios, by model version.
    pub fn error_rates(&self, rates: &[(&str, f64)]) {
        let text: String = rates
            .iter()
            .map(|(version, rate)| {
                format!(
                    "model_error_ratio{{namespace=\"{}\",model_version=\"{version}\"}} {rate}\n",
                    self.ns.name
                )
            })
            .collect();
        self.exporter.set(&text);
    }

    /// Waits until Prometheus has scraped the value the exporter now serves.
    pub async fn scraped(&self, version: &str, rate: Option<f64>) {
        let query = format!(
            r#"max(model_error_ratio{{namespace="{}",model_version="{version}"}})"#,
            self.ns.name
        );
        let start = std::time::Instant::now();
        loop {
            let got = prometheus_query(&query).await.expect("Prometheus answers");
            if got == rate {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "Prometheus never saw {query} = {rate:?} (last {got:?})"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn create(&self, version: &str, analysis: Value, alerts: Value) {
        let md: ModelDeployment = serde_json::from_value(json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
            "spec": {
                "model": {"version": version}, "server": {"image": "srv:1"}, "replicas": 1,
                "rollout": {"analysis": analysis},
                "alerts": alerts,
            },
        }))
        .unwrap();
        self.mds
            .create(&PostParams::default(), &md)
            .await
            .expect("create");
    }

    pub async fn set(&self, spec: Value) {
        self.mds
            .patch(
                "m",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch");
    }

    pub async fn set_version(&self, version: &str) {
        self.set(json!({"model": {"version": version}})).await;
    }

    pub async fn wait(&self, what: &str, ok: impl Fn(&ModelDeployment) -> bool) -> ModelDeployment {
        wait_for(&self.mds, "m", what, TIMEOUT, |m| {
            m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation && ok(m)
        })
        .await
    }

    pub async fn wait_template(&self, revision: i64) {
        wait_for(
            &self.deployments,
            "m",
            &format!("run revision {revision}"),
            TIMEOUT,
            |d| model_operator::resources::revision_of(d) == Some(revision),
        )
        .await;
    }

    pub async fn events(&self) -> Vec<(String, String)> {
        Api::<Event>::namespaced(self.client.clone(), &self.ns.name)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// The alerts Alertmanager holds for this test's namespace, active or not.
    pub async fn alertmanager_alerts(&self) -> Vec<Value> {
        let filter = format!("namespace=\"{}\"", self.ns.name);
        let alerts: Value = reqwest::Client::new()
            .get(format!("{}/api/v2/alerts", alertmanager()))
            .query(&[("filter", filter.as_str())])
            .send()
            .await
            .expect("Alertmanager answers (is `make monitoring-up` running?)")
            .json()
            .await
            .expect("alerts JSON");
        alerts.as_array().cloned().unwrap_or_default()
    }

    /// Waits until Alertmanager holds an alert with these labels (and any
    /// others) and returns it.
    pub async fn wait_alert(&self, labels: Value) -> Value {
        let start = std::time::Instant::now();
        loop {
            let alerts = self.alertmanager_alerts().await;
            if let Some(a) = alerts.iter().find(|a| has_labels(a, &labels)) {
                return a.clone();
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "Alertmanager never got an alert with {labels}; it has {alerts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until no active alert with these labels is left.
    pub async fn wait_alert_resolved(&self, labels: Value) {
        let start = std::time::Instant::now();
        loop {
            let alerts = self.alertmanager_alerts().await;
            let active = alerts
                .iter()
                .find(|a| has_labels(a, &labels) && a["status"]["state"] == "active");
            if active.is_none() {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "alert {labels} never resolved: {active:#?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

pub fn has_labels(alert: &Value, labels: &Value) -> bool {
    labels
        .as_object()
        .is_some_and(|want| want.iter().all(|(k, v)| &alert["labels"][k] == v))
}

/// Fast settings: checks every 2s (Prometheus scrapes every 2s here).
pub fn analysis(extra: Value, max: f64, increase: Option<f64>) -> Value {
    let mut a = json!({
        "prometheus": {"address": prometheus(), "timeoutSeconds": 2},
        "interval": "2s",
        "bakeTime": "4s",
        "failureLimit": 0,
        "inconclusiveLimit": 2,
        "metrics": [{"name": "error-rate", "query": ERROR_RATE, "max": max, "maxIncreasePercent": increase}],
    });
    if let (Some(a), Some(extra)) = (a.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

pub fn stable(m: &ModelDeployment) -> Option<i64> {
    m.status.as_ref()?.stable_revision
}

pub fn phase(m: &ModelDeployment) -> Option<Phase> {
    m.status.as_ref()?.phase
}

pub fn outcome(m: &ModelDeployment, revision: i64) -> Option<Outcome> {
    let status = m.status.as_ref()?;
    status
        .history
        .iter()
        .find(|e| e.revision == revision)
        .map(|e| e.outcome)
}

pub fn webhook_alert<'a>(body: &'a Value, status: &str, alertname: &str) -> Option<&'a Value> {
    body["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["status"] == status && a["labels"]["alertname"] == alertname)
}
