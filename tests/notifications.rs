//! Notifications people read, end to end: a Slack and a Teams receiver on
//! 127.0.0.1, as strict as the real services about the body (a malformed
//! one gets 400 and is never counted), each get the started, promoted and
//! rolled-back notifications of their ModelDeployment exactly once, though
//! the operator is killed (SIGKILL) while each of them is pending, and
//! once more after everything was delivered.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeMap;

use model_operator::api::{AlertChannel, AlertState, ModelDeployment, Outcome};
use serde_json::{Value, json};
use support::receivers::{Chat, ChatReceiver};
use support::*;

/// The ModelDeployment sending to each receiver.
const MODELS: [(&str, Chat, &str); 2] = [
    ("to-slack", Chat::Slack, "Slack"),
    ("to-teams", Chat::Teams, "Teams"),
];

/// Keys of the webhook notifications `m`'s outbox holds, by alertname.
fn pending(m: &ModelDeployment) -> BTreeMap<String, String> {
    m.status
        .iter()
        .flat_map(|s| &s.alert_outbox)
        .filter(|n| n.pending.contains(&AlertChannel::Webhook))
        .map(|n| (n.alert.alertname.clone(), n.key.clone()))
        .collect()
}

/// The notifications of a ModelDeployment this test follows, by alertname,
/// with the state each must have.
fn is_pending(m: &ModelDeployment, alertname: &str, state: AlertState) -> Option<String> {
    m.status
        .as_ref()?
        .alert_outbox
        .iter()
        .find(|n| {
            n.alert.alertname == alertname
                && n.state == state
                && n.pending.contains(&AlertChannel::Webhook)
        })
        .map(|n| n.key.clone())
}

struct World {
    s: Setup,
    receivers: Vec<ChatReceiver>,
}

impl World {
    async fn start() -> Self {
        let s = Setup::new("notify").await;
        let mut receivers = Vec::new();
        for (name, chat, format) in MODELS {
            let receiver = ChatReceiver::start(chat).await;
            let secret = format!("{name}-hook");
            receiver
                .install_secret(&s.client, &s.ns.name, &secret)
                .await;
            receiver.set_up(false);
            s.create_named(
                name,
                json!({
                    "model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1,
                    "rollout": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 600},
                    "alerts": {"webhook": {
                        "urlSecretRef": {"name": secret, "key": "url"},
                        "format": format,
                        "notify": ["RolloutStarted", "Promoted", "RolledBack"],
                    }},
                }),
            )
            .await;
            receivers.push(receiver);
        }
        Self { s, receivers }
    }

    /// Applies `spec` to both ModelDeployments while the receivers are
    /// down, waits until status holds each `(alertname, state)` for the
    /// webhook and a delivery was refused, kills the operator, brings the
    /// receivers back, starts a new process, and waits until each receiver
    /// got each notification. Returns the keys, per receiver.
    async fn across_a_kill(
        &mut self,
        spec: Option<Value>,
        expect: &[(&str, AlertState)],
    ) -> Vec<Vec<String>> {
        let tried: Vec<usize> = self.receivers.iter().map(|r| r.attempts()).collect();
        for r in &self.receivers {
            r.set_up(false);
        }
        let mut keys = Vec::new();
        for (name, _, _) in MODELS {
            if let Some(spec) = &spec {
                self.s.patch_spec(name, spec.clone()).await;
            }
            let m = self
                .s
                .wait_named(name, &format!("{expect:?} pending in status"), |m| {
                    expect
                        .iter()
                        .all(|(alertname, state)| is_pending(m, alertname, *state).is_some())
                })
                .await;
            keys.push(
                expect
                    .iter()
                    .map(|(alertname, state)| is_pending(&m, alertname, *state).unwrap())
                    .collect::<Vec<_>>(),
            );
        }
        // A delivery was tried and refused: what was decided is in status only.
        for (r, before) in self.receivers.iter().zip(tried) {
            r.wait_attempt(before).await;
        }
        self.kill_and_restart(true).await;
        for (r, keys) in self.receivers.iter().zip(&keys) {
            for key in keys {
                r.wait_key(key).await;
            }
        }
        for (name, _, _) in MODELS {
            self.s
                .wait_named(name, "the deliveries marked in status", |m| {
                    pending(m).is_empty()
                })
                .await;
        }
        keys
    }

    /// Kills the operator, brings the receivers up (`up`), starts a new
    /// process and waits until it has reconciled.
    async fn kill_and_restart(&mut self, up: bool) {
        self.s.operators[0].kill();
        for r in &self.receivers {
            r.set_up(up);
        }
        self.s.operators[0].restart();
        let operator = &self.s.operators[0];
        eventually(
            "the new operator reconciles",
            std::time::Duration::from_secs(120),
            || async {
                match operator.metric("model_operator_reconciles_total").await {
                    Some(n) if n >= 1.0 => Ok(()),
                    other => Err(other),
                }
            },
        )
        .await;
    }
}

#[tokio::test]
async fn slack_and_teams_get_started_promoted_and_rolled_back_exactly_once_across_kills() {
    let mut w = World::start().await;

    // Revision 1 starts and is promoted while the receivers are down.
    let first = w
        .across_a_kill(
            None,
            &[
                ("ModelRolloutStarted", AlertState::Notice),
                ("ModelPromoted", AlertState::Notice),
            ],
        )
        .await;
    for (name, _, _) in MODELS {
        w.s.wait_named(name, "revision 1 stable", |m| {
            outcome(m, 1) == Some(Outcome::Stable)
        })
        .await;
    }

    // Revision 2 crash-loops and is rolled back.
    let crash = json!({"model": {"version": "2"},
        "podMetadata": {"labels": {"mlops.dev/simulate": "crash-loop"}}});
    let second = w
        .across_a_kill(
            Some(crash),
            &[
                ("ModelRolloutStarted", AlertState::Notice),
                ("ModelRolledBack", AlertState::Firing),
            ],
        )
        .await;

    // Everything was delivered and marked: a restart sends none of it
    // again. Revision 3 is the barrier: once its notifications arrived,
    // a repeat of the earlier ones would have arrived before them (one
    // delivery at a time per channel, in the order decided).
    w.kill_and_restart(true).await;
    let good = json!({"model": {"version": "3"}, "podMetadata": {"labels": null}});
    let third = w
        .across_a_kill(
            Some(good),
            &[
                ("ModelRolloutStarted", AlertState::Notice),
                ("ModelPromoted", AlertState::Notice),
            ],
        )
        .await;

    for (i, r) in w.receivers.iter().enumerate() {
        let keys: Vec<&String> = [&first[i], &second[i], &third[i]]
            .into_iter()
            .flatten()
            .collect();
        let titles: Vec<String> = r.accepted().iter().map(|b| r.chat.title(b)).collect();
        for key in &keys {
            assert_eq!(
                r.deliveries(key),
                1,
                "{:?}: {key} once: {titles:#?}",
                r.chat
            );
        }
        assert_eq!(
            r.accepted().len(),
            keys.len(),
            "{:?}: nothing else: {titles:#?}",
            r.chat
        );
        assert_eq!(
            r.refused(),
            Vec::<String>::new(),
            "{:?}: no malformed body",
            r.chat
        );
        let (name, _, _) = MODELS[i];
        let kinds: Vec<&str> = titles
            .iter()
            .map(|t| {
                ["Rollout started", "Promoted", "Rolled back"]
                    .into_iter()
                    .find(|k| t.contains(k))
                    .unwrap_or(t)
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "Rollout started",
                "Promoted",
                "Rollout started",
                "Rolled back",
                "Rollout started",
                "Promoted"
            ],
            "{:?}: {titles:#?}",
            r.chat
        );
        assert!(
            titles[3].starts_with(&format!(
                "{}/{name}: Rolled back · revision 2 (model 2)",
                w.s.ns.name
            )),
            "{titles:#?}"
        );
    }
    assert!(
        !w.s.operators[0].logs().contains("s3cr3t"),
        "a webhook URL leaked into the logs"
    );
}

/// The receivers refuse what Slack and Teams refuse, so an accepted body
/// is one they would take.
#[test]
fn the_receivers_refuse_what_slack_and_teams_refuse() {
    let slack_ok = json!({"text": "hi", "blocks": [{"type": "section"}]});
    let teams_ok = json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "hi"}]}}]});
    assert_eq!(Chat::Slack.refuses(&slack_ok), None);
    assert_eq!(
        Chat::Slack.refuses(&json!({"text": "no blocks is fine"})),
        None
    );
    assert_eq!(Chat::Teams.refuses(&teams_ok), None);
    for bad in [
        json!({"blocks": [{"type": "section"}]}),
        json!({"text": ""}),
        json!({"text": 3}),
        json!({"text": "hi", "blocks": {"type": "section"}}),
        json!({"text": "hi", "blocks": [{"text": "no type"}]}),
        json!({"text": "hi", "blocks": ["section"]}),
        teams_ok.clone(),
    ] {
        assert!(Chat::Slack.refuses(&bad).is_some(), "Slack takes {bad}");
    }
    let mut empty_card = teams_ok.clone();
    empty_card["attachments"][0]["content"]["body"] = json!([]);
    let mut not_a_card = teams_ok.clone();
    not_a_card["attachments"][0]["contentType"] = json!("application/json");
    let mut no_message = teams_ok.clone();
    no_message["type"] = json!("card");
    let alertmanager_shape = json!({"version": "1", "status": "firing", "alerts": []});
    for bad in [
        empty_card,
        not_a_card,
        no_message,
        alertmanager_shape,
        slack_ok,
    ] {
        assert!(Chat::Teams.refuses(&bad).is_some(), "Teams takes {bad}");
    }
}
