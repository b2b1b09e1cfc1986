//! Sends alerts to Alertmanager (v2 API) and a webhook. Delivery runs in its
//! own tasks with a timeout: a slow or failing channel never holds up or
//! fails a reconcile; failures are logged and counted on `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use serde_json::{Value, json};

use super::desired::Transition;
use crate::api::{FiringAlert, SecretKeyRef};
use crate::egress::{self, ALERT_BODY_LIMIT, Failure, Policy};
use crate::metrics::{DeliveryLabels, Metrics};

/// Alertmanager forgets an alert this long after its last update unless
/// told again; the operator re-sends firing alerts well before that.
const FIRING_FOR: SignedDuration = SignedDuration::from_mins(15);
const RESEND_AFTER: Duration = Duration::from_secs(240);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where one ModelDeployment's alerts go, and what they are about.
#[derive(Clone, Debug)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub model: String,
    pub alertmanager: Option<String>,
    pub webhook: Option<SecretKeyRef>,
}

pub struct Deliverer {
    http: reqwest::Client,
    policy: Arc<Policy>,
    client: Client,
    metrics: Arc<Metrics>,
    /// When each firing alert last went to Alertmanager (in memory only: after
    /// a restart everything firing is simply sent again).
    sent: Mutex<HashMap<String, Instant>>,
}

impl Deliverer {
    pub fn new(
        http: reqwest::Client,
        policy: Arc<Policy>,
        client: Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            policy,
            client,
            metrics,
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the delivery state of keys under `prefix`
    /// (`<namespace>/<name>/`): the ModelDeployment was deleted.
    pub fn forget(&self, prefix: &str) {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(prefix));
    }

    /// Sends what changed, and re-sends to Alertmanager firing alerts it may
    /// be about to forget.
    pub fn deliver(self: &Arc<Self>, target: &Target, transition: &Transition) {
        let now = Timestamp::now();
        let mut to_alertmanager: Vec<Value> = Vec::new();
        let mut to_webhook: Vec<Value> = Vec::new();
        {
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            for alert in &transition.next {
                let key = key(target, alert);
                let new = transition.firing.iter().any(|f| f.same_alert(alert));
                let due = sent.get(&key).is_none_or(|at| at.elapsed() >= RESEND_AFTER);
                if new || due {
                    sent.insert(key, Instant::now());
                    to_alertmanager.push(payload(target, alert, "firing", now));
                }
                if new {
                    to_webhook.push(payload(target, alert, "firing", now));
                }
            }
            for alert in &transition.resolved {
                sent.remove(&key(target, alert));
                to_alertmanager.push(payload(target, alert, "resolved", now));
                to_webhook.push(payload(target, alert, "resolved", now));
            }
        }
        if let Some(url) = target
            .alertmanager
            .clone()
            .filter(|_| !to_alertmanager.is_empty())
        {
            let this = self.clone();
            tokio::spawn(async move {
                let url = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
                let result = match this.policy.check(&url) {
                    Ok(_) => this.post(&url, &Value::Array(to_alertmanager)).await,
                    Err(f) => Err(f),
                }
                .map_err(|f| f.to_string());
                this.record("alertmanager", &url, result);
            });
        }
        if let Some(secret) = target.webhook.clone().filter(|_| !to_webhook.is_empty()) {
            let this = self.clone();
            let namespace = target.namespace.clone();
            tokio::spawn(async move {
                let body = json!({
                    "version": "1",
                    "receiver": "model-operator",
                    "status": to_webhook.first().and_then(|a| a.get("status")).cloned().unwrap_or(Value::Null),
                    "alerts": to_webhook,
                });
                let result = match crate::secrets::read_key(
                    &this.client,
                    &namespace,
                    &secret,
                    crate::secrets::Purpose::AlertWebhook,
                )
                .await
                {
                    Ok(url) => match this.policy.check_secret_url(&url) {
                        Ok(_) => this.post(&url, &body).await.map_err(|f| f.to_string()),
                        Err(f) => Err(f.to_string()),
                    },
                    Err(e) => Err(e),
                };
                // The URL is a secret: only its Secret is named.
                let named = format!(
                    "the URL in Secret {namespace}/{} key {}",
                    secret.name, secret.key
                );
                this.record("webhook", &named, result);
            });
        }
    }

    /// Posts `body` to a URL the policy allowed; only the answer's status
    /// is used, and at most `ALERT_BODY_LIMIT` bytes of it are read.
    async fn post(&self, url: &str, body: &Value) -> Result<(), Failure> {
        let request = self.http.post(url).json(body);
        let (status, _) = egress::send_capped(request, TIMEOUT, ALERT_BODY_LIMIT).await?;
        match status {
            200..=299 => Ok(()),
            other => Err(Failure::Status(other)),
        }
    }

    fn record(&self, channel: &str, destination: &str, result: Result<(), String>) {
        let outcome = match &result {
            Ok(()) => "ok",
            Err(_) => "error",
        };
        self.metrics
            .alert_deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.into(),
                result: outcome.into(),
            })
            .inc();
        if let Err(e) = result {
            tracing::warn!(
                channel,
                destination,
                error = e.as_str(),
                "alert delivery failed"
            );
        }
    }
}

fn key(target: &Target, alert: &FiringAlert) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        target.namespace, target.name, alert.alertname, alert.revision, alert.metric
    )
}

/// The labels a routing tree can use; documented in docs/analysis.md.
pub fn labels(target: &Target, alert: &FiringAlert) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("alertname".to_string(), alert.alertname.clone()),
        ("severity".to_string(), alert.severity.clone()),
        ("namespace".to_string(), target.namespace.clone()),
        ("modeldeployment".to_string(), target.name.clone()),
        ("model".to_string(), target.model.clone()),
        ("revision".to_string(), alert.revision.to_string()),
        ("model_version".to_string(), alert.model_version.clone()),
    ]);
    for (name, value) in [("metric", &alert.metric), ("reason", &alert.reason)] {
        if !value.is_empty() {
            labels.insert(name.to_string(), value.clone());
        }
    }
    labels
}

fn payload(target: &Target, alert: &FiringAlert, status: &str, now: Timestamp) -> Value {
    let starts = alert.since.as_ref().map_or(now, |t| t.0);
    let ends = if status == "firing" {
        now.checked_add(FIRING_FOR).unwrap_or(now)
    } else {
        now
    };
    json!({
        "status": status,
        "labels": labels(target, alert),
        "annotations": {
            "summary": format!("{} {}/{} revision {}", alert.alertname, target.namespace, target.name, alert.revision),
            "description": alert.message,
        },
        "startsAt": starts.to_string(),
        "endsAt": ends.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_documented_labels() {
        let target = Target {
            namespace: "prod".into(),
            name: "fraud".into(),
            model: "fraud-detector".into(),
            alertmanager: None,
            webhook: None,
        };
        let alert = FiringAlert {
            alertname: "ModelMetricBreach".into(),
            severity: "critical".into(),
            revision: 3,
            model_version: "2.1.0".into(),
            metric: "error-rate".into(),
            reason: "PostPromotionBreach".into(),
            message: "bad".into(),
            since: None,
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let p = payload(&target, &alert, "resolved", now);
        assert_eq!(
            p["labels"],
            json!({"alertname": "ModelMetricBreach", "severity": "critical", "namespace": "prod", "modeldeployment": "fraud", "model": "fraud-detector", "revision": "3", "model_version": "2.1.0", "metric": "error-rate", "reason": "PostPromotionBreach"})
        );
        assert_eq!(
            p["endsAt"],
            json!(now.to_string()),
            "resolved alerts end now"
        );
        let p = payload(&target, &alert, "firing", now);
        assert_eq!(
            p["endsAt"],
            json!(now.checked_add(FIRING_FOR).unwrap().to_string())
        );
    }
}
