//! At-least-once alerts, end to end: a notification decided while the
//! webhook is down survives a SIGKILL of the operator and arrives once the
//! webhook is back and a new process runs; a delivered one is not sent
//! again after a restart. The real Alertmanager gets the same alerts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use model_operator::api::{AlertChannel, AlertState, ModelDeployment, Outcome, Phase};
use serde_json::{Value, json};
use support::fakes::WebhookSink;
use support::gates::{Gates, alertmanager, webhook_alert};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The key of the notification in `m`'s outbox for `alertname` in `state`
/// that the webhook has yet to confirm.
fn pending_webhook_key(m: &ModelDeployment, state: AlertState, alertname: &str) -> Option<String> {
    m.status
        .as_ref()?
        .alert_outbox
        .iter()
        .find(|n| {
            n.state == state
                && n.alert.alertname == alertname
                && n.pending.contains(&AlertChannel::Webhook)
        })
        .map(|n| n.key.clone())
}

/// How many accepted webhook alerts carry `key`.
fn received(sink: &WebhookSink, key: &str) -> usize {
    sink.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["idempotencyKey"] == key)
        .count()
}

/// Kills the operator (SIGKILL), runs `meanwhile`, starts a new process and
/// waits until it has reconciled at least once.
async fn kill_and_restart(s: &mut Setup, meanwhile: impl FnOnce()) {
    s.operators[0].kill();
    meanwhile();
    s.operators[0].restart();
    let operator = &s.operators[0];
    eventually("the new operator reconciles", TIMEOUT, || async {
        match operator.metric("model_operator_reconciles_total").await {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// The webhook is down when `spec` is applied and its alert transition
/// (`state` of ModelRolledBack) is decided; a delivery is refused, the
/// operator is killed, the webhook comes back and a new process starts.
/// The notification arrives with the key status gave it, and status then
/// shows nothing pending. Returns the key.
async fn decided_while_down(
    s: &mut Setup,
    sink: &WebhookSink,
    spec: Value,
    state: AlertState,
    firing_after: bool,
) -> String {
    sink.set_up(false);
    let tried = sink.attempts();
    s.set(spec).await;
    let what = format!("{state:?} ModelRolledBack pending in status");
    let m = s
        .wait(&what, |m| {
            let firing = m
                .status
                .as_ref()
                .is_some_and(|s| s.alerts.iter().any(|a| a.alertname == "ModelRolledBack"));
            firing == firing_after && pending_webhook_key(m, state, "ModelRolledBack").is_some()
        })
        .await;
    let key = pending_webhook_key(&m, state, "ModelRolledBack").unwrap();
    // A delivery was tried and refused: the decision is in status only.
    sink.wait_attempt(tried).await;
    kill_and_restart(s, || sink.set_up(true)).await;
    let status = if firing_after { "firing" } else { "resolved" };
    let body = sink
        .wait_for(&format!("the {status} ModelRolledBack"), |b| {
            webhook_alert(b, status, "ModelRolledBack").is_some()
        })
        .await;
    let sent = webhook_alert(&body, status, "ModelRolledBack").unwrap();
    assert_eq!(sent["idempotencyKey"], key.as_str());
    assert_eq!(sent["labels"]["revision"], "2");
    s.wait("the delivery marked in status", |m| {
        m.status.as_ref().is_some_and(|s| s.alert_outbox.is_empty())
    })
    .await;
    key
}

/// A webhook sink, and ModelDeployment `m` (revision 1 stable) alerting to
/// it and, unless null, to this Alertmanager.
async fn stable_m_alerting(s: &Setup, alertmanager: Value) -> WebhookSink {
    let sink = WebhookSink::start().await;
    sink.install_secret(&s.client, &s.ns.name, "model-alerts")
        .await;
    s.create(json!({
        "model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1,
        "rollout": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 600},
        "alerts": {"alertmanager": alertmanager,
                   "webhook": {"urlSecretRef": {"name": "model-alerts", "key": "url"}}},
    }))
    .await;
    s.wait("make revision 1 stable", |m| {
        outcome(m, 1) == Some(Outcome::Stable) && phase(m) == Some(Phase::Healthy)
    })
    .await;
    sink
}

#[tokio::test]
async fn notifications_decided_while_the_webhook_is_down_survive_a_kill_and_arrive_once() {
    let mut s = Setup::new("alerts-outbox").await;
    let sink = stable_m_alerting(&s, json!({"url": alertmanager()})).await;

    // Revision 2 crash-loops and is rolled back: ModelRolledBack fires.
    let crash = json!({"model": {"version": "2"},
        "podMetadata": {"labels": {"mlops.dev/simulate": "crash-loop"}}});
    let firing = decided_while_down(&mut s, &sink, crash, AlertState::Firing, true).await;
    s.wait_alert(json!({"alertname": "ModelRolledBack", "modeldeployment": "m", "revision": "2"}))
        .await;

    // Back to revision 1: resolved, likewise across a kill.
    let back = json!({"model": {"version": "1"}, "podMetadata": {"labels": null}});
    let resolved = decided_while_down(&mut s, &sink, back, AlertState::Resolved, false).await;
    assert_ne!(resolved, firing);
    s.wait_alert_resolved(json!({"alertname": "ModelRolledBack", "modeldeployment": "m"}))
        .await;

    // Both were delivered and marked: another restart sends neither again.
    kill_and_restart(&mut s, || {}).await;
    // The first pass dispatches at once; give its tasks the time a local
    // webhook needs to answer (a duplicate would arrive well within it).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let counts = (received(&sink, &firing), received(&sink, &resolved));
    assert_eq!(
        counts,
        (1, 1),
        "each notification arrived once: {:#?}",
        sink.bodies()
    );
    let statuses: Vec<Value> = sink
        .bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("firing"), json!("resolved")]);
    assert!(
        !s.operators[0].logs().contains("s3cr3t"),
        "the webhook URL leaked into the logs"
    );
}

#[tokio::test]
async fn a_new_leader_delivers_what_the_deposed_one_decided() {
    let mut s = Setup::builder("alerts-lease")
        .replicas(2)
        .args(&LEASE_TIMING)
        .start()
        .await;
    let sink = stable_m_alerting(&s, Value::Null).await;
    let leader = leader(&s).await;

    sink.set_up(false);
    let tried = sink.attempts();
    s.set(json!({"model": {"version": "2"},
        "podMetadata": {"labels": {"mlops.dev/simulate": "crash-loop"}}}))
        .await;
    let m = s
        .wait("firing ModelRolledBack pending in status", |m| {
            pending_webhook_key(m, AlertState::Firing, "ModelRolledBack").is_some()
        })
        .await;
    let key = pending_webhook_key(&m, AlertState::Firing, "ModelRolledBack").unwrap();
    sink.wait_attempt(tried).await;
    // The leader dies for good; only the standby can deliver now.
    s.operators[leader].kill();
    sink.set_up(true);
    let body = sink
        .wait_for("the firing ModelRolledBack from the new leader", |b| {
            webhook_alert(b, "firing", "ModelRolledBack").is_some()
        })
        .await;
    assert_eq!(
        webhook_alert(&body, "firing", "ModelRolledBack").unwrap()["idempotencyKey"],
        key.as_str()
    );
    s.wait("the delivery marked in status", |m| {
        m.status.as_ref().is_some_and(|s| s.alert_outbox.is_empty())
    })
    .await;
    assert_eq!(s.operators[1 - leader].leads().await, Some(true));
    assert_eq!(received(&sink, &key), 1, "{:#?}", sink.bodies());
}

/// The index of the replica that leads, once one does.
async fn leader(s: &Setup) -> usize {
    eventually("one replica leads", TIMEOUT, || async {
        match (s.operators[0].leads().await, s.operators[1].leads().await) {
            (Some(true), Some(false)) => Ok(0),
            (Some(false), Some(true)) => Ok(1),
            other => Err(other),
        }
    })
    .await
}
