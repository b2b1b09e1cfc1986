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
use crate::api::{AlertChannel, AlertNotification, AlertState, AlertsSpec, FiringAlert};

/// Notifications kept at most; beyond that the oldest are dropped (and
/// counted). 32 covers every alert one ModelDeployment can raise (22)
/// resolving at once, and keeps the worst-case status under its ceiling
/// (`controller::status::bounded`).
pub const MAX_PENDING: usize = 32;

/// The channels `spec.alerts` configures.
pub fn channels(spec: Option<&AlertsSpec>) -> Vec<AlertChannel> {
    let Some(spec) = spec else {
        return Vec::new();
    };
    let mut channels = Vec::new();
    if spec.alertmanager.is_some() {
        channels.push(AlertChannel::Alertmanager);
    }
    if spec.webhook.is_some() {
        channels.push(AlertChannel::Webhook);
    }
    channels
}

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
/// transition's new ones for every configured channel. `uid` tells apart
/// ModelDeployments that reused a name, in the keys.
pub fn next(
    stored: &[AlertNotification],
    transition: &Transition,
    configured: &[AlertChannel],
    confirmed: &[Confirmed],
    uid: &str,
    now: &Time,
) -> Next {
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
    if !configured.is_empty() {
        let new = transition
            .firing
            .iter()
            .map(|a| (AlertState::Firing, a))
            .chain(
                transition
                    .resolved
                    .iter()
                    .map(|a| (AlertState::Resolved, a)),
            );
        for (state, alert) in new {
            let key = key(uid, alert, state);
            if outbox.iter().any(|n| n.key == key) {
                continue;
            }
            outbox.push(AlertNotification {
                state,
                alert: alert.clone(),
                pending: configured.to_vec(),
                key,
                decided_at: Some(now.clone()),
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::transition;
    use k8s_openapi::jiff::Timestamp;

    use AlertChannel::{Alertmanager, Webhook};

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
        let pending = next(&[], &fires, &both, &[], "uid", &at(10)).outbox;
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
            let got = next(&stored, transition, configured, &confirmed, "uid", &at(20));
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
                next(&[], &t, &[Webhook], &[], "uid", &at(10)).outbox[0].clone()
            })
            .collect();
        let t = transition(&[], vec![alert("newest")], &at(20));
        let got = next(&stored, &t, &[Webhook], &[], "uid", &at(20));
        assert_eq!(got.dropped, vec![Webhook]);
        assert_eq!(got.outbox.len(), MAX_PENDING);
        assert_eq!(got.outbox[0].alert.metric, "m1");
        assert_eq!(got.outbox[MAX_PENDING - 1].alert.metric, "newest");
    }

    #[test]
    fn pending_for_a_channel() {
        let t = transition(&[], vec![alert("a"), alert("b")], &at(10));
        let mut outbox = next(&[], &t, &[Alertmanager, Webhook], &[], "uid", &at(10)).outbox;
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
}
