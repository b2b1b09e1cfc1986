//! Which rollout transitions put which notification in the planned
//! outbox, and for which channel, as `spec.alerts` asks.

use std::sync::Arc;

use serde_json::{Value, json};

use super::tests::{crash_looping, entry, passed, revision, snapshot, stable_on_1};
use super::*;
use crate::api::{AlertState, ModelDeployment};

/// `seen` with `spec.alerts` set to `alerts`.
fn alerting(mut seen: Snapshot, alerts: Value) -> Snapshot {
    let mut md = serde_json::to_value(seen.md.as_ref()).unwrap();
    md["spec"]["alerts"] = alerts;
    seen.md = Arc::new(serde_json::from_value::<ModelDeployment>(md).unwrap());
    seen
}

fn webhook(notify: Value) -> Value {
    json!({"urlSecretRef": {"name": "hook", "key": "url"}, "format": "Slack", "notify": notify})
}

/// (state, alertname, pending) of the planned outbox.
fn outbox(seen: &Snapshot, requested: i64) -> Vec<(AlertState, String, Vec<AlertChannel>)> {
    plan(seen, requested, &passed(), None, None)
        .unwrap()
        .revisions
        .alert_outbox
        .into_iter()
        .map(|n| (n.state, n.alert.alertname, n.pending))
        .collect()
}

fn new_version() -> Snapshot {
    snapshot(
        "2.0",
        Some(1),
        stable_on_1(),
        vec![revision(1, "1.0"), revision(2, "2.0")],
    )
}

fn completing() -> Snapshot {
    let previous = Revisions {
        requested: Some(1),
        current: Some(1),
        history: vec![entry(1, Outcome::Progressing)],
        ..Revisions::default()
    };
    let mut seen = snapshot("1.0", Some(1), previous, vec![revision(1, "1.0")]);
    seen.health = Health::Complete;
    seen
}

#[test]
fn transitions_raise_the_notifications_asked_for() {
    use AlertChannel::{Alertmanager, Webhook};
    use AlertState::{Firing, Notice};
    let all = json!(["RolloutStarted", "Promoted", "RolledBack"]);
    type Case = (
        &'static str,
        Snapshot,
        i64,
        Vec<(AlertState, &'static str, Vec<AlertChannel>)>,
    );
    let cases: Vec<Case> = vec![
        (
            "a start, asked for",
            alerting(new_version(), json!({"webhook": webhook(all.clone())})),
            2,
            vec![(Notice, "ModelRolloutStarted", vec![Webhook])],
        ),
        (
            "a start, webhook without notify: nothing new",
            alerting(
                new_version(),
                json!({"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}}),
            ),
            2,
            vec![],
        ),
        ("a start, no alerts at all", new_version(), 2, vec![]),
        (
            "a promotion, asked for",
            alerting(completing(), json!({"webhook": webhook(all.clone())})),
            1,
            vec![(Notice, "ModelPromoted", vec![Webhook])],
        ),
        (
            "a promotion, not asked for",
            alerting(
                completing(),
                json!({"webhook": webhook(json!(["RolledBack"]))}),
            ),
            1,
            vec![],
        ),
        (
            "a rollback, asked for, and to Alertmanager",
            alerting(
                crash_looping(),
                json!({"alertmanager": {"url": "http://am:9093"}, "webhook": webhook(all)}),
            ),
            2,
            vec![(Firing, "ModelRolledBack", vec![Alertmanager, Webhook])],
        ),
        (
            "a rollback the webhook did not ask for still goes to Alertmanager",
            alerting(
                crash_looping(),
                json!({"alertmanager": {"url": "http://am:9093"},
                       "webhook": webhook(json!(["Promoted"]))}),
            ),
            2,
            vec![(Firing, "ModelRolledBack", vec![Alertmanager])],
        ),
    ];
    for (what, seen, requested, want) in cases {
        let want: Vec<_> = want
            .into_iter()
            .map(|(s, a, c)| (s, a.to_string(), c))
            .collect();
        assert_eq!(outbox(&seen, requested), want, "{what}");
    }
}

#[test]
fn a_pass_that_repeats_a_written_decision_raises_no_notice_again() {
    let seen = alerting(
        new_version(),
        json!({"webhook": webhook(json!(["RolloutStarted"]))}),
    );
    let first = plan(&seen, 2, &passed(), None, None).unwrap();
    assert_eq!(first.revisions.alert_outbox.len(), 1);
    // The next pass sees the written status: revision 2 started, its
    // notice pending. It decides nothing new and keeps the one notice.
    let mut next = alerting(
        snapshot(
            "2.0",
            Some(2),
            first.revisions.clone(),
            vec![revision(1, "1.0"), revision(2, "2.0")],
        ),
        json!({"webhook": webhook(json!(["RolloutStarted"]))}),
    );
    next.health = Health::Rolling;
    let again = plan(&next, 2, &passed(), None, None).unwrap();
    assert_eq!(again.revisions.alert_outbox, first.revisions.alert_outbox);
}
