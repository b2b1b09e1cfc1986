//! The alert outbox: which notifications (firing, resolved) each channel
//! still has to confirm. Pure. It lives in `status.alertOutbox` and is
//! written with the decision that raised the notifications, so whatever
//! happens between that write and a channel's 2xx (a failed request, a kill,
//! another replica taking over) ends with the notification sent again.
//! A channel's confirmation is kept in memory until the next status write
//! removes it from the outbox: a kill in that gap repeats the notification
//! (at least once, with the same `key` for receivers to deduplicate).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::desired::Transition;
pub use super::routing::{Routing, kind};
use crate::api::{AlertChannel, AlertNotification, AlertState, FiringAlert};

/// Notifications kept at most; beyond that the oldest are dropped (and
/// counted). 32 covers every alert one ModelDeployment can raise (22)
/// resolving at once, and keeps the worst-case status under its ceiling
/// (`controller::status::bounded`).
pub const MAX_PENDING: usize = 32;

/// A delivery a channel confirmed (2xx), not yet removed from status.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Confirmed {
    pub key: String,
    pub channel: AlertChannel,
}

/// The outbox after one pass.
#[derive(Debug, Default, PartialEq)]
pub struct Next {
    pub outbox: Vec<AlertNotification>,
    /// The channels of notifications dropped because the outbox was full
    /// (one entry per notification and channel), for `/metrics`.
    pub dropped: Vec<AlertChannel>,
}

/// What the outbox holds after this pass: the stored notifications less
/// what was confirmed, less channels no longer configured, plus the
/// transition's new ones and this pass's lifecycle `notices`, each for the
/// channels `routing` sends it to. `uid` tells apart ModelDeployments that
/// reused a name, in the keys.
pub fn next(
    stored: &[AlertNotification],
    transition: &Transition,
    notices: &[FiringAlert],
    routing: &Routing,
    confirmed: &[Confirmed],
    uid: &str,
    now: &Time,
) -> Next {
    let configured = routing.configured();
    let mut outbox: Vec<AlertNotification> = stored
        .iter()
        .filter(|n| n.state != AlertState::Unknown)
        .filter_map(|n| {
            let mut n = n.clone();
            n.pending.retain(|c| {
                configured.contains(c)
                    && !confirmed.iter().any(|d| d.channel == *c && d.key == n.key)
            });
            n.pending.dedup();
            (!n.pending.is_empty()).then_some(n)
        })
        .collect();
    let new = transition
        .firing
        .iter()
        .map(|a| (AlertState::Firing, a))
        .chain(
            transition
                .resolved
                .iter()
                .map(|a| (AlertState::Resolved, a)),
        )
        .chain(notices.iter().map(|a| (AlertState::Notice, a)));
    for (state, alert) in new {
        let pending = routing.channels(state, &alert.alertname);
        if pending.is_empty() {
            continue;
        }
        let key = match state {
            AlertState::Notice => notice_key(uid, alert),
            _ => key(uid, alert, state),
        };
        if outbox.iter().any(|n| n.key == key) {
            continue;
        }
        outbox.push(AlertNotification {
            state,
            alert: alert.clone(),
            pending,
            key,
            decided_at: Some(now.clone()),
        });
    }
    let over = outbox.len().saturating_sub(MAX_PENDING);
    let dropped = outbox.drain(..over).flat_map(|n| n.pending).collect();
    Next { outbox, dropped }
}

/// The notifications `channel` still has to confirm.
pub fn pending_for(outbox: &[AlertNotification], channel: AlertChannel) -> Vec<&AlertNotification> {
    outbox
        .iter()
        .filter(|n| n.pending.contains(&channel))
        .collect()
}

/// The same for every attempt, process and replica: a hash of the
/// ModelDeployment's uid, the alert's identity, when it started firing
/// (one key per episode) and the state.
pub fn key(uid: &str, alert: &FiringAlert, state: AlertState) -> String {
    let since = alert
        .since
        .as_ref()
        .map(|t| t.0.as_second().to_string())
        .unwrap_or_default();
    let state = match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
        AlertState::Notice => "notice",
        AlertState::Unknown => "unknown",
    };
    let mut parts = Vec::new();
    for part in [
        uid,
        &alert.alertname,
        &alert.revision.to_string(),
        &alert.metric,
        &since,
        state,
    ] {
        parts.extend_from_slice(part.as_bytes());
        // A separator no part contains, so parts cannot run into each other.
        parts.push(0u8);
    }
    crate::digest::sha256_hex(&parts, 16)
}

/// A notice's key: as `key`, with the decision's time to the nanosecond
/// (a notice is decided once, in the write that records what it tells) and
/// its `metric` (a canary's step).
pub fn notice_key(uid: &str, notice: &FiringAlert) -> String {
    let at = notice
        .since
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let mut parts = Vec::new();
    for part in [
        uid,
        &notice.alertname,
        &notice.revision.to_string(),
        &notice.metric,
        &at,
        "notice",
    ] {
        parts.extend_from_slice(part.as_bytes());
        parts.push(0u8);
    }
    crate::digest::sha256_hex(&parts, 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{lifecycle, transition};
    use crate::api::NotificationKind;
    use k8s_openapi::jiff::Timestamp;

    use AlertChannel::{Alertmanager, Webhook};

    /// These channels, the webhook with its default kinds.
    fn routing(channels: &[AlertChannel]) -> Routing {
        Routing {
            alertmanager: channels.contains(&Alertmanager),
            webhook: channels
                .contains(&Webhook)
                .then(|| NotificationKind::ALERTS.to_vec()),
        }
    }

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn alert(metric: &str) -> FiringAlert {
        FiringAlert {
            alertname: "ModelMetricBreach".into(),
            severity: "critical".into(),
            revision: 1,
            metric: metric.into(),
            ..FiringAlert::default()
        }
    }

    /// (state, metric, pending) of each notification, in order.
    fn summary(outbox: &[AlertNotification]) -> Vec<(AlertState, String, Vec<AlertChannel>)> {
        outbox
            .iter()
            .map(|n| (n.state, n.alert.metric.clone(), n.pending.clone()))
            .collect()
    }

    fn confirm(n: &AlertNotification, channel: AlertChannel) -> Confirmed {
        Confirmed {
            key: n.key.clone(),
            channel,
        }
    }

    #[test]
    fn table() {
        let both = [Alertmanager, Webhook];
        let fires = transition(&[], vec![alert("a")], &at(10));
        let pending = next(&[], &fires, &[], &routing(&both), &[], "uid", &at(10)).outbox;
        let firing_a = pending[0].clone();
        let resolves = transition(&fires.next, vec![], &at(20));
        let unchanged = Transition {
            next: fires.next.clone(),
            ..Transition::default()
        };
        let mut unknown_state = firing_a.clone();
        unknown_state.state = AlertState::Unknown;
        let mut unknown_channel = firing_a.clone();
        unknown_channel.pending = vec![AlertChannel::Unknown, Webhook];
        type Case<'a> = (
            &'a str,
            Vec<AlertNotification>,
            &'a Transition,
            &'a [AlertChannel],
            Vec<Confirmed>,
            Vec<(AlertState, &'a str, Vec<AlertChannel>)>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "a new alert is pending on every configured channel",
                vec![],
                &fires,
                &both,
                vec![],
                vec![(AlertState::Firing, "a", vec![Alertmanager, Webhook])],
            ),
            (
                "no channel configured: nothing to send",
                vec![],
                &fires,
                &[],
                vec![],
                vec![],
            ),
            (
                "nothing confirmed: stays pending (a retry, or a restart)",
                vec![firing_a.clone()],
                &unchanged,
                &both,
                vec![],
                vec![(AlertState::Firing, "a", vec![Alertmanager, Webhook])],
            ),
            (
                "one channel confirmed: only the other is left",
                vec![firing_a.clone()],
                &unchanged,
                &both,
                vec![confirm(&firing_a, Webhook)],
                vec![(AlertState::Firing, "a", vec![Alertmanager])],
            ),
            (
                "every channel confirmed: gone",
                vec![firing_a.clone()],
                &unchanged,
                &both,
                vec![
                    confirm(&firing_a, Webhook),
                    confirm(&firing_a, Alertmanager),
                ],
                vec![],
            ),
            (
                "resolved before the firing one was confirmed: both, in order",
                vec![firing_a.clone()],
                &resolves,
                &both,
                vec![],
                vec![
                    (AlertState::Firing, "a", vec![Alertmanager, Webhook]),
                    (AlertState::Resolved, "a", vec![Alertmanager, Webhook]),
                ],
            ),
            (
                "a channel removed from the spec is not waited for",
                vec![firing_a.clone()],
                &unchanged,
                &[Alertmanager],
                vec![],
                vec![(AlertState::Firing, "a", vec![Alertmanager])],
            ),
            (
                "an unknown state is dropped, an unknown channel too",
                vec![unknown_state, unknown_channel],
                &unchanged,
                &both,
                vec![],
                vec![(AlertState::Firing, "a", vec![Webhook])],
            ),
        ];
        for (what, stored, transition, configured, confirmed, want) in cases {
            let got = next(
                &stored,
                transition,
                &[],
                &routing(configured),
                &confirmed,
                "uid",
                &at(20),
            );
            let want: Vec<_> = want
                .into_iter()
                .map(|(s, m, c)| (s, m.to_string(), c))
                .collect();
            assert_eq!(summary(&got.outbox), want, "{what}");
            assert!(got.dropped.is_empty(), "{what}");
        }
    }

    #[test]
    fn keys_are_stable_and_differ_per_episode_state_and_object() {
        let mut a = alert("a");
        a.since = Some(at(10));
        let firing = key("uid", &a, AlertState::Firing);
        assert_eq!(firing.len(), 32);
        let mut reworded = a.clone();
        reworded.message = "worse now".into();
        assert_eq!(
            key("uid", &reworded, AlertState::Firing),
            firing,
            "the message is not part of the identity"
        );
        let mut later = a.clone();
        later.since = Some(at(99));
        for other in [
            key("uid", &a, AlertState::Resolved),
            key("uid", &later, AlertState::Firing),
            key("uid2", &a, AlertState::Firing),
            key("uid", &alert("b"), AlertState::Firing),
        ] {
            assert_ne!(other, firing);
        }
        // Pinned: receivers may have stored keys, and a notification
        // pending across an upgrade must keep its key.
        assert_eq!(firing, "49d0d4c14b7c770c3c10bc6c0e2ce74f");
    }

    #[test]
    fn a_full_outbox_drops_the_oldest() {
        let stored: Vec<AlertNotification> = (0..MAX_PENDING)
            .map(|i| {
                let t = transition(&[], vec![alert(&format!("m{i}"))], &at(10));
                next(&[], &t, &[], &routing(&[Webhook]), &[], "uid", &at(10)).outbox[0].clone()
            })
            .collect();
        let t = transition(&[], vec![alert("newest")], &at(20));
        let got = next(&stored, &t, &[], &routing(&[Webhook]), &[], "uid", &at(20));
        assert_eq!(got.dropped, vec![Webhook]);
        assert_eq!(got.outbox.len(), MAX_PENDING);
        assert_eq!(got.outbox[0].alert.metric, "m1");
        assert_eq!(got.outbox[MAX_PENDING - 1].alert.metric, "newest");
    }

    #[test]
    fn pending_for_a_channel() {
        let t = transition(&[], vec![alert("a"), alert("b")], &at(10));
        let mut outbox = next(
            &[],
            &t,
            &[],
            &routing(&[Alertmanager, Webhook]),
            &[],
            "uid",
            &at(10),
        )
        .outbox;
        outbox[0].pending = vec![Alertmanager];
        let metrics = |c| {
            pending_for(&outbox, c)
                .iter()
                .map(|n| n.alert.metric.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(metrics(Webhook), vec!["b"]);
        assert_eq!(metrics(Alertmanager), vec!["a", "b"]);
    }

    #[test]
    fn notices_go_to_the_webhook_with_a_key_each() {
        let notice = |alertname: &str, metric: &str, second: i64| FiringAlert {
            alertname: alertname.into(),
            severity: "info".into(),
            revision: 2,
            metric: metric.into(),
            since: Some(at(second)),
            ..FiringAlert::default()
        };
        let routing = Routing {
            alertmanager: true,
            webhook: Some(NotificationKind::ALL.to_vec()),
        };
        let notices = [
            notice(lifecycle::ROLLOUT_STARTED, "", 10),
            notice(lifecycle::CANARY_STEP, "step-1", 10),
            notice(lifecycle::CANARY_STEP, "step-2", 10),
            notice(lifecycle::CANARY_STEP, "step-1", 20),
        ];
        let got = next(
            &[],
            &Transition::default(),
            &notices,
            &routing,
            &[],
            "uid",
            &at(10),
        );
        assert_eq!(got.outbox.len(), 4);
        for n in &got.outbox {
            assert_eq!(n.state, AlertState::Notice);
            assert_eq!(n.pending, vec![Webhook]);
        }
        let mut keys: Vec<&str> = got.outbox.iter().map(|n| n.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 4, "every notice has its own key");
        assert_eq!(notice_key("uid", &notices[0]), got.outbox[0].key);
        let none = Routing {
            alertmanager: true,
            webhook: None,
        };
        let got = next(
            &[],
            &Transition::default(),
            &notices,
            &none,
            &[],
            "uid",
            &at(10),
        );
        assert!(got.outbox.is_empty(), "no webhook: no notice");
    }
}
