//! What the metric-gate tests share: their `Setup` (with a test exporter
//! scraped by the real Prometheus), their ModelDeployment `m`, and helpers to
//! read what the real Alertmanager holds.

use std::time::Duration;

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

/// A metric-gate test's world: the namespace, one operator and a test
/// exporter scraped by the real Prometheus.
pub async fn setup(prefix: &str) -> Setup {
    setup_with(prefix, &[]).await
}

/// `setup` with more operator flags.
pub async fn setup_with(prefix: &str, extra: &[&str]) -> Setup {
    Setup::builder(prefix).exporter().args(extra).start().await
}

/// What the metric-gate tests do with their exporter and Alertmanager
/// (`Setup` has the verbs for `m` itself: create, set_version, wait).
pub trait Gates {
    fn error_rates(&self, rates: &[(&str, f64)]);
    async fn scraped(&self, version: &str, rate: Option<f64>);
    async fn alertmanager_alerts(&self) -> Vec<Value>;
    async fn wait_alert(&self, labels: Value) -> Value;
    async fn wait_alert_resolved(&self, labels: Value);
}

impl Gates for Setup {
    /// The exporter serves these error ratios, by model version.
    fn error_rates(&self, rates: &[(&str, f64)]) {
        let text: String = rates
            .iter()
            .map(|(version, rate)| {
                format!(
                    "model_error_ratio{{namespace=\"{}\",model_version=\"{version}\"}} {rate}\n",
                    self.ns.name
                )
            })
            .collect();
        self.exporter
            .as_ref()
            .expect("a metric-gate Setup has an exporter")
            .set(&text);
    }

    /// Waits until Prometheus has scraped the value the exporter now serves.
    async fn scraped(&self, version: &str, rate: Option<f64>) {
        let query = format!(
            r#"max(model_error_ratio{{namespace="{}",model_version="{version}"}})"#,
            self.ns.name
        );
        prometheus_sees(&query, rate, TIMEOUT).await
    }

    /// The alerts Alertmanager holds for this test's namespace, active or not.
    async fn alertmanager_alerts(&self) -> Vec<Value> {
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
    async fn wait_alert(&self, labels: Value) -> Value {
        let what = format!("Alertmanager holds an alert with {labels}");
        eventually(&what, TIMEOUT, || async {
            let alerts = self.alertmanager_alerts().await;
            match alerts.iter().find(|a| has_labels(a, &labels)) {
                Some(a) => Ok(a.clone()),
                None => Err(alerts),
            }
        })
        .await
    }

    /// Waits until no active alert with these labels is left.
    async fn wait_alert_resolved(&self, labels: Value) {
        eventually(&format!("alert {labels} is resolved"), TIMEOUT, || async {
            let alerts = self.alertmanager_alerts().await;
            match alerts
                .iter()
                .find(|a| has_labels(a, &labels) && a["status"]["state"] == "active")
            {
                Some(active) => Err(active.clone()),
                None => Ok(()),
            }
        })
        .await
    }
}

/// The spec of a metric-gated `m`: `version` on `srv:1`, one replica,
/// this analysis and these alerts (`null`: none).
pub fn gated(version: &str, analysis: Value, alerts: Value) -> Value {
    json!({
        "model": {"version": version}, "server": {"image": "srv:1"}, "replicas": 1,
        "rollout": {"analysis": analysis},
        "alerts": alerts,
    })
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

pub fn webhook_alert<'a>(body: &'a Value, status: &str, alertname: &str) -> Option<&'a Value> {
    body["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["status"] == status && a["labels"]["alertname"] == alertname)
}

/// A fake Prometheus that answers every query with 0.01, and the spec of a
/// model gated on it (max 0.05): it passes its checks once its rounds run.
/// Keep the task alive as long as the model is analysed.
pub async fn passing_gates() -> (Value, tokio::task::JoinHandle<()>) {
    let (port, _seen, prometheus) = super::fakes::fake_prometheus("0.01").await;
    let gated = analysis(
        json!({"prometheus": {"address": format!("http://127.0.0.1:{port}"), "timeoutSeconds": 2}}),
        0.05,
        None,
    );
    let spec = json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1,
        "rollout": {"analysis": gated}});
    (spec, prometheus)
}

/// Creates `count` models `hangs0`, `hangs1`… whose gates query the
/// endpoint at `address`, which never answers (60 s timeout each round).
pub async fn create_hanging(
    mds: &kube::Api<model_operator::api::ModelDeployment>,
    address: &str,
    count: usize,
) {
    let analysis = analysis(
        json!({"prometheus": {"address": address, "timeoutSeconds": 60}, "inconclusiveLimit": 100}),
        0.05,
        None,
    );
    for i in 0..count {
        let md = super::model(
            &format!("hangs{i}"),
            json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1,
                "rollout": {"analysis": analysis.clone()}}),
        );
        mds.create(&Default::default(), &md).await.expect("create");
    }
}
