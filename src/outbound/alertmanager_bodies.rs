//! The Alertmanager-shaped bodies: alerts of Alertmanager's v2 API, and
//! its webhook shape (`format: Alertmanager`). Pure.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::alerts::messages::About;
use crate::api::{AlertNotification, AlertState, FiringAlert};

/// Alertmanager forgets an alert this long after its last update unless
/// told again; the operator re-sends firing alerts well before that.
const FIRING_FOR: SignedDuration = SignedDuration::from_mins(15);

/// The labels a routing tree can use; documented in docs/analysis.md.
pub fn labels(about: &About<'_>, alert: &FiringAlert) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("alertname".to_string(), alert.alertname.clone()),
        ("severity".to_string(), alert.severity.clone()),
        ("namespace".to_string(), about.namespace.to_string()),
        ("modeldeployment".to_string(), about.name.to_string()),
        ("model".to_string(), about.model.to_string()),
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

/// A notification as an alert of Alertmanager's API (and of its webhook
/// shape). A resolved alert ends when it was decided to.
pub fn notification(about: &About<'_>, n: &AlertNotification, now: Timestamp) -> Value {
    let decided = n.decided_at.as_ref().map_or(now, |t| t.0);
    payload(about, &n.alert, n.state, now, decided)
}

/// `now`: when it is sent (a firing alert's `endsAt` counts from it);
/// `resolved_at`: a resolved alert's `endsAt`.
pub fn payload(
    about: &About<'_>,
    alert: &FiringAlert,
    state: AlertState,
    now: Timestamp,
    resolved_at: Timestamp,
) -> Value {
    let starts = alert.since.as_ref().map_or(now, |t| t.0);
    let (status, ends) = match state {
        AlertState::Resolved => ("resolved", resolved_at),
        // A notice is news, not a condition: it ends when it was decided.
        AlertState::Notice => ("firing", resolved_at),
        _ => ("firing", now.checked_add(FIRING_FOR).unwrap_or(now)),
    };
    json!({
        "status": status,
        "labels": labels(about, alert),
        "annotations": {
            "summary": format!("{} {}/{} revision {}", alert.alertname, about.namespace, about.name, alert.revision),
            "description": alert.message,
        },
        "startsAt": starts.to_string(),
        "endsAt": ends.to_string(),
    })
}

/// `format: Alertmanager`: Alertmanager's webhook shape, every notification
/// of the batch an alert with its `idempotencyKey`.
pub fn alertmanager_webhook(
    about: &About<'_>,
    batch: &[AlertNotification],
    now: Timestamp,
) -> Value {
    let alerts: Vec<Value> = batch
        .iter()
        .map(|n| {
            let mut alert = notification(about, n, now);
            alert["idempotencyKey"] = json!(n.key);
            alert
        })
        .collect();
    // A notice's alert says firing (above), so the body does too.
    let any_firing = batch.iter().any(|n| n.state != AlertState::Resolved);
    json!({
        "version": "1",
        "receiver": "model-operator",
        "status": if any_firing { "firing" } else { "resolved" },
        "alerts": alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_documented_labels() {
        let about = About {
            namespace: "prod",
            name: "fraud",
            model: "fraud-detector",
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
        let p = payload(&about, &alert, AlertState::Resolved, now, now);
        assert_eq!(
            p["labels"],
            json!({"alertname": "ModelMetricBreach", "severity": "critical", "namespace": "prod", "modeldeployment": "fraud", "model": "fraud-detector", "revision": "3", "model_version": "2.1.0", "metric": "error-rate", "reason": "PostPromotionBreach"})
        );
        assert_eq!(
            p["endsAt"],
            json!(now.to_string()),
            "resolved alerts end now"
        );
        let p = payload(&about, &alert, AlertState::Firing, now, now);
        assert_eq!(
            p["endsAt"],
            json!(now.checked_add(FIRING_FOR).unwrap().to_string())
        );
    }
}
