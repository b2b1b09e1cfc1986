//! Metric gates end to end: the real Prometheus scrapes a test exporter whose
//! per-version values each test sets; the real Alertmanager and a webhook
//! sink receive the alerts.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use model_operator::api::{AnalysisPhase, ModelDeployment, Outcome, Phase, Verdict};
use serde_json::{Value, json};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);
const ALERTMANAGER: &str = "http://127.0.0.1:19093";

/// The query every test gates on: the exporter's error ratio of one version
/// in the test's namespace.
const ERROR_RATE: &str =
    r#"max(model_error_ratio{namespace="{{namespace}}",model_version="{{version}}"})"#;

struct Setup {
    client: Client,
    ns: TestNamespace,
    _operator: Operator,
    metrics_port: u16,
    mds: Api<ModelDeployment>,
    deployments: Api<Deployment>,
    exporter: Exporter,
    _target: ScrapeTarget,
}

async fn setup(prefix: &str) -> Setup {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let operator = Operator::start_with(
        &ns.name,
        &[
            "--metrics-addr",
            &metrics_addr,
            "--health-addr",
            "127.0.0.1:0",
        ],
    );
    let exporter = Exporter::start("").await;
    let target = ScrapeTarget::add(&format!("exporter-{}", ns.name), exporter.port, json!({}));
    Setup {
        mds: Api::namespaced(client.clone(), &ns.name),
        deployments: Api::namespaced(client.clone(), &ns.name),
        client,
        ns,
        _operator: operator,
        metrics_port,
        exporter,
        _target: target,
    }
}

impl Setup {
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
        self.exporter.set(&text);
    }

    /// Waits until Prometheus has scraped the value the exporter now serves.
    async fn scraped(&self, version: &str, rate: Option<f64>) {
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

    async fn create(&self, version: &str, analysis: Value, alerts: Value) {
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

    async fn set(&self, spec: Value) {
        self.mds
            .patch(
                "m",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch");
    }

    async fn set_version(&self, version: &str) {
        self.set(json!({"model": {"version": version}})).await;
    }

    async fn wait(&self, what: &str, ok: impl Fn(&ModelDeployment) -> bool) -> ModelDeployment {
        wait_for(&self.mds, "m", what, TIMEOUT, |m| {
            m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation && ok(m)
        })
        .await
    }

    async fn wait_template(&self, revision: i64) {
        wait_for(
            &self.deployments,
            "m",
            &format!("run revision {revision}"),
            TIMEOUT,
            |d| model_operator::resources::revision_of(d) == Some(revision),
        )
        .await;
    }

    async fn events(&self) -> Vec<(String, String)> {
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
    async fn alertmanager_alerts(&self) -> Vec<Value> {
        let filter = format!("namespace=\"{}\"", self.ns.name);
        let alerts: Value = reqwest::Client::new()
            .get(format!("{ALERTMANAGER}/api/v2/alerts"))
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
    async fn wait_alert_resolved(&self, labels: Value) {
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

fn has_labels(alert: &Value, labels: &Value) -> bool {
    labels
        .as_object()
        .is_some_and(|want| want.iter().all(|(k, v)| &alert["labels"][k] == v))
}

/// Fast settings: checks every 2s (Prometheus scrapes every 2s here).
fn analysis(extra: Value, max: f64, increase: Option<f64>) -> Value {
    let mut a = json!({
        "prometheus": {"address": PROMETHEUS, "timeoutSeconds": 2},
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

fn stable(m: &ModelDeployment) -> Option<i64> {
    m.status.as_ref()?.stable_revision
}

fn phase(m: &ModelDeployment) -> Option<Phase> {
    m.status.as_ref()?.phase
}

fn outcome(m: &ModelDeployment, revision: i64) -> Option<Outcome> {
    let status = m.status.as_ref()?;
    status
        .history
        .iter()
        .find(|e| e.revision == revision)
        .map(|e| e.outcome)
}

/// A webhook receiver on 127.0.0.1 that keeps every JSON body posted to it.
struct WebhookSink {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookSink {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let shared = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 8192];
                    // Read headers, then as many body bytes as announced.
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&data).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if data.len() >= end + 4 + length {
                                let body = &data[end + 4..end + 4 + length];
                                if let Ok(v) = serde_json::from_slice::<Value>(body) {
                                    shared.lock().unwrap().push(v);
                                }
                                let _ = conn
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                    .await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { port, bodies, task }
    }

    async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        loop {
            let bodies = self.bodies.lock().unwrap().clone();
            if let Some(b) = bodies.iter().find(|b| ok(b)) {
                return b.clone();
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "the webhook never got {what}; it got {bodies:#?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn webhook_alert<'a>(body: &'a Value, status: &str, alertname: &str) -> Option<&'a Value> {
    body["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["status"] == status && a["labels"]["alertname"] == alertname)
}

#[tokio::test]
async fn a_version_with_a_higher_error_rate_is_rolled_back_and_alerted() {
    let s = setup("analysis-rollback").await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.30)]);
    s.scraped("2.0", Some(0.30)).await;
    let sink = WebhookSink::start().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "model-alerts"},
        "stringData": {"url": format!("http://127.0.0.1:{}/hooks/models?token=s3cr3t\n", sink.port)},
    }))
    .unwrap();
    Api::<Secret>::namespaced(s.client.clone(), &s.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    s.create(
        "1.0",
        analysis(json!({}), 0.05, None),
        json!({"alertmanager": {"url": ALERTMANAGER}, "webhook": {"urlSecretRef": {"name": "model-alerts", "key": "url"}}}),
    )
    .await;
    s.wait("promote 1.0", |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;

    s.set_version("2.0").await;
    let m = s
        .wait("roll 2.0 back on its error rate", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    s.wait_template(1).await;
    let status = m.status.unwrap();
    let entry = status.history.iter().find(|e| e.revision == 2).unwrap();
    assert_eq!(entry.reason, "AnalysisFailed");
    let resolved_query = format!(
        r#"max(model_error_ratio{{namespace="{}",model_version="2.0"}})"#,
        s.ns.name
    );
    for part in ["error-rate", "0.3 is above 0.05", resolved_query.as_str()] {
        assert!(
            entry.message.contains(part),
            "history message {:?} lacks {part:?}",
            entry.message
        );
    }
    let seen = entry
        .analysis
        .iter()
        .find(|c| c.name == "error-rate")
        .expect("checks kept in history");
    assert_eq!((seen.verdict, seen.value), (Verdict::Fail, Some(0.3)));
    assert_eq!(stable(&s.mds.get("m").await.unwrap()), Some(1));

    let events = s.events().await;
    assert!(
        events.iter().any(|(reason, note)| reason == "RolledBack"
            && note.contains("error-rate")
            && note.contains("0.3")),
        "no RolledBack event naming the metric and value: {events:#?}"
    );

    // Alertmanager, with labels a routing tree can use.
    let alert = s
        .wait_alert(
            json!({"alertname": "ModelRolledBack", "modeldeployment": "m", "revision": "2"}),
        )
        .await;
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["model_version"], "2.0");
    assert_eq!(alert["labels"]["metric"], "error-rate");
    assert_eq!(alert["labels"]["reason"], "AnalysisFailed");
    assert_eq!(alert["labels"]["model"], "m");

    // The webhook got the same alert as JSON; its URL (with a token) is
    // never logged.
    let body = sink
        .wait_for("a firing ModelRolledBack", |b| {
            webhook_alert(b, "firing", "ModelRolledBack").is_some()
        })
        .await;
    let sent = webhook_alert(&body, "firing", "ModelRolledBack").unwrap();
    assert_eq!(sent["labels"]["metric"], "error-rate");
    assert_eq!(sent["labels"]["namespace"], s.ns.name.as_str());
    assert!(
        sent["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("0.3 is above 0.05")
    );

    // Going back to the stable version clears the condition: resolved.
    s.set_version("1.0").await;
    s.wait("serve 1.0 again", |m| phase(m) == Some(Phase::Healthy))
        .await;
    sink.wait_for("a resolved ModelRolledBack", |b| {
        webhook_alert(b, "resolved", "ModelRolledBack").is_some()
    })
    .await;
    s.wait_alert_resolved(json!({"alertname": "ModelRolledBack", "modeldeployment": "m"}))
        .await;
    let logs = s._operator.logs();
    assert!(
        !logs.contains("s3cr3t"),
        "the webhook URL leaked into the logs"
    );
}

#[tokio::test]
async fn relative_regression_against_the_stable_revision_rolls_back_and_equal_values_promote() {
    let s = setup("analysis-relative").await;
    s.error_rates(&[("1.0", 0.02), ("2.0", 0.02), ("3.0", 0.03)]);
    s.scraped("3.0", Some(0.03)).await;
    // 0.03 is well within the absolute bound; only the +50% against the
    // stable revision's 0.02 breaks the 20% relative bound.
    s.create("1.0", analysis(json!({}), 0.05, Some(20.0)), json!(null))
        .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    s.set_version("2.0").await;
    let m = s
        .wait("promote 2.0 (same value as 1.0)", |m| stable(m) == Some(2))
        .await;
    let status = m.status.unwrap();
    let entry = status.history.iter().find(|e| e.revision == 2).unwrap();
    let check = entry
        .analysis
        .iter()
        .find(|c| c.name == "error-rate")
        .expect("checks in history");
    assert_eq!(
        (check.verdict, check.value, check.baseline),
        (Verdict::Pass, Some(0.02), Some(0.02))
    );
    assert!(
        check.bound.contains("baseline 0.02 +20%"),
        "{}",
        check.bound
    );
    // Promoted only once the bake time had passed after every pod ran it.
    let analysis = status.analysis.as_ref().expect("analysis status");
    assert_eq!(analysis.revision, 2);
    let baked_from = analysis.bake_started_at.as_ref().expect("bake start").0;
    let promoted = entry.promoted_at.as_ref().expect("promotion time").0;
    assert!(
        promoted.as_millisecond() - baked_from.as_millisecond() >= 4_000,
        "promoted at {promoted}, before the 4s bake time from {baked_from} was over"
    );

    s.set_version("3.0").await;
    let m = s
        .wait("roll 3.0 back on the relative bound", |m| {
            outcome(m, 3) == Some(Outcome::RolledBack)
        })
        .await;
    s.wait_template(2).await;
    let entry = m
        .status
        .as_ref()
        .unwrap()
        .history
        .iter()
        .find(|e| e.revision == 3)
        .unwrap()
        .clone();
    assert!(
        entry
            .message
            .contains("0.03 is above 0.024 (baseline 0.02 +20%)"),
        "{}",
        entry.message
    );
    assert_eq!(stable(&m), Some(2));
}

#[tokio::test]
async fn no_data_stops_the_rollout_without_promotion_until_retried() {
    let s = setup("analysis-nodata").await;
    s.error_rates(&[("1.0", 0.01)]);
    s.scraped("1.0", Some(0.01)).await;
    s.create(
        "1.0",
        analysis(json!({}), 0.05, None),
        json!({"alertmanager": {"url": ALERTMANAGER}}),
    )
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    // Version 2.0 has no series at all.
    s.set_version("2.0").await;
    let m = s
        .wait("stop on missing data", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.analysis.as_ref())
                .is_some_and(|a| a.revision == 2 && a.phase == AnalysisPhase::Inconclusive)
        })
        .await;
    assert_eq!(phase(&m), Some(Phase::Paused));
    assert_eq!(stable(&m), Some(1), "never promoted on missing data");
    assert_eq!(
        outcome(&m, 2),
        Some(Outcome::Progressing),
        "not rolled back either"
    );
    let analysis = m.status.as_ref().unwrap().analysis.clone().unwrap();
    assert!(
        analysis.metrics[0].message.contains("no data"),
        "{:?}",
        analysis.metrics[0]
    );
    s.wait_template(2).await;
    s.wait_alert(json!({"alertname": "ModelAnalysisInconclusive", "modeldeployment": "m", "revision": "2", "metric": "error-rate"}))
        .await;

    // Data arrives; the analysis stays stopped until a person retries it.
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = s.mds.get("m").await.unwrap();
    assert_eq!(
        stable(&m),
        Some(1),
        "a stopped analysis does not resume by itself"
    );
    s.mds
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"mlops.dev/retry": "1"}}})),
        )
        .await
        .unwrap();
    s.wait("promote 2.0 after the retry", |m| stable(m) == Some(2))
        .await;
    s.wait_alert_resolved(
        json!({"alertname": "ModelAnalysisInconclusive", "modeldeployment": "m"}),
    )
    .await;
}

#[tokio::test]
async fn prometheus_down_is_inconclusive_and_never_promotes() {
    let s = setup("analysis-promdown").await;
    // Nothing listens on this port: every query fails to connect.
    let dead = format!("http://127.0.0.1:{}", free_port());
    // The alert channel is down too: that must not hold anything up.
    let dead_alertmanager = format!("http://127.0.0.1:{}", free_port());
    s.create(
        "1.0",
        analysis(
            json!({"prometheus": {"address": dead, "timeoutSeconds": 1}}),
            0.05,
            None,
        ),
        json!({"alertmanager": {"url": dead_alertmanager}}),
    )
    .await;
    let m = s
        .wait("stop on Prometheus errors", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.analysis.as_ref())
                .is_some_and(|a| a.phase == AnalysisPhase::Inconclusive)
        })
        .await;
    let status = m.status.as_ref().unwrap();
    assert_eq!(
        status.stable_revision, None,
        "never promoted while Prometheus is down"
    );
    assert_eq!(status.phase, Some(Phase::Paused));
    let check = &status.analysis.as_ref().unwrap().metrics[0];
    assert_eq!(check.verdict, Verdict::Inconclusive);
    assert!(
        check.message.contains("Prometheus gave no answer"),
        "{}",
        check.message
    );
    assert!(check.inconclusive > 2, "{check:?}");
    assert_eq!(outcome(&m, 1), Some(Outcome::Progressing));
    assert_eq!(
        status.alerts.first().map(|a| a.alertname.as_str()),
        Some("ModelAnalysisInconclusive")
    );
    // The failed delivery was counted, and reconciling went on regardless.
    let metrics_url = format!("http://127.0.0.1:{}/metrics", s.metrics_port);
    let start = std::time::Instant::now();
    loop {
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(
            r#"model_operator_alert_deliveries_total{channel="alertmanager",result="error"}"#,
        ) {
            break;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "no failed delivery counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_post_promotion_breach_alerts_and_rolls_back_when_asked() {
    let s = setup("analysis-guard").await;
    let target = ScrapeTarget::add(
        &format!("operator-{}", s.ns.name),
        s.metrics_port,
        json!({}),
    );
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.scraped("2.0", Some(0.01)).await;
    s.create(
        "1.0",
        analysis(json!({}), 0.05, None),
        json!({"alertmanager": {"url": ALERTMANAGER}}),
    )
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    // Action Alert: the breach is reported, nothing is rolled back.
    s.error_rates(&[("1.0", 0.2), ("2.0", 0.01)]);
    let m = s
        .wait("report the breach", |m| phase(m) == Some(Phase::Degraded))
        .await;
    let degraded = m
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(degraded.reason, "MetricBreach");
    assert!(
        degraded.message.contains("0.2 is above 0.05"),
        "{}",
        degraded.message
    );
    s.wait_alert(json!({"alertname": "ModelMetricBreach", "modeldeployment": "m", "revision": "1", "metric": "error-rate", "severity": "critical"}))
        .await;
    // The last value of the metric is on the operator's /metrics, scraped by
    // the real Prometheus.
    let query = format!(
        r#"model_operator_analysis_value{{namespace="{}",modeldeployment="m",metric="error-rate"}}"#,
        s.ns.name
    );
    let start = std::time::Instant::now();
    while prometheus_query(&query).await.expect("Prometheus answers") != Some(0.2) {
        assert!(
            start.elapsed() < TIMEOUT,
            "Prometheus never scraped {query} = 0.2 from the operator"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(target);
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.01)]);
    s.wait("clear the breach", |m| phase(m) == Some(Phase::Healthy))
        .await;
    s.wait_alert_resolved(json!({"alertname": "ModelMetricBreach", "modeldeployment": "m"}))
        .await;

    // Action Rollback: 2.0 is promoted, then breaches; 1.0 comes back.
    s.set(json!({"rollout": {"analysis": {"postPromotion": {"action": "Rollback"}}}, "model": {"version": "2.0"}})).await;
    s.wait("promote 2.0", |m| stable(m) == Some(2)).await;
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.2)]);
    let m = s
        .wait("roll the breaching 2.0 back", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    s.wait_template(1).await;
    let status = m.status.as_ref().unwrap();
    assert_eq!(status.stable_revision, Some(1));
    let two = status.history.iter().find(|e| e.revision == 2).unwrap();
    assert_eq!(two.reason, "PostPromotionBreach");
    let one = status.history.iter().find(|e| e.revision == 1).unwrap();
    assert_eq!(
        (one.outcome, one.reason.as_str()),
        (Outcome::Stable, "Reinstated")
    );
    assert_eq!(status.phase, Some(Phase::RolledBack));
    s.wait_alert(json!({"alertname": "ModelRolledBack", "modeldeployment": "m", "revision": "2", "reason": "PostPromotionBreach"}))
        .await;
}

#[tokio::test]
async fn the_metric_gates_example_is_accepted_by_the_api_server() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "analysis-example").await;
    let file = repo_root().join("config/examples/metric-gates.yaml");
    let out = kubectl(&[
        "-n",
        &ns.name,
        "apply",
        "--dry-run=server",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stand-in for Prometheus's query API that answers every query with one
/// number and remembers the Authorization headers it was sent. (The real
/// Prometheus here has no authentication to check a token against.)
async fn fake_prometheus(
    value: &str,
) -> (u16, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = seen.clone();
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"scalar","result":[0,"{value}"]}}}}"#
    );
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (shared, body) = (shared.clone(), body.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let Ok(n) = conn.read(&mut buf).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let auth = request
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .trim()
                    .to_string();
                shared.lock().unwrap().push(auth);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen, task)
}

#[tokio::test]
async fn the_bearer_token_from_a_secret_is_sent_and_never_logged() {
    let s = setup("analysis-token").await;
    let (port, seen, task) = fake_prometheus("0.01").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "prometheus-token"},
        "stringData": {"token": "t0k3n-v4lue\n"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(s.client.clone(), &s.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let prometheus = json!({"address": format!("http://127.0.0.1:{port}"), "bearerTokenSecretRef": {"name": "prometheus-token", "key": "token"}});
    s.create(
        "1.0",
        analysis(json!({"prometheus": prometheus}), 0.05, None),
        json!(null),
    )
    .await;
    s.wait("promote 1.0 on the token-protected answers", |m| {
        stable(m) == Some(1)
    })
    .await;
    let headers = seen.lock().unwrap().clone();
    assert!(!headers.is_empty());
    assert!(
        headers.iter().all(|h| h == "Bearer t0k3n-v4lue"),
        "{headers:?}"
    );
    assert!(
        !s._operator.logs().contains("t0k3n"),
        "the token leaked into the logs"
    );
    task.abort();
}
