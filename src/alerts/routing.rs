//! Which channel gets which notification: Alertmanager every alert, the
//! webhook the kinds its `notify` lists (`spec.alerts`). Pure.

use super::{desired, lifecycle};
use crate::api::{AlertChannel, AlertState, AlertsSpec, NotificationKind};

/// Which channel gets which notification, from `spec.alerts`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Routing {
    pub alertmanager: bool,
    /// The kinds the webhook gets, when there is one.
    pub webhook: Option<Vec<NotificationKind>>,
}

impl Routing {
    pub fn of(spec: Option<&AlertsSpec>) -> Self {
        Self {
            alertmanager: spec.is_some_and(|s| s.alertmanager.is_some()),
            webhook: spec
                .and_then(|s| s.webhook.as_ref())
                .map(|w| w.kinds().to_vec()),
        }
    }

    /// The channels configured at all.
    pub fn configured(&self) -> Vec<AlertChannel> {
        let mut channels = Vec::new();
        if self.alertmanager {
            channels.push(AlertChannel::Alertmanager);
        }
        if self.webhook.is_some() {
            channels.push(AlertChannel::Webhook);
        }
        channels
    }

    /// The channels a notification goes to: Alertmanager gets every alert
    /// and no notice; the webhook what its `notify` lists, a Resolved only
    /// when the alert's own kind is listed too.
    pub fn channels(&self, state: AlertState, alertname: &str) -> Vec<AlertChannel> {
        let mut channels = Vec::new();
        if self.alertmanager && matches!(state, AlertState::Firing | AlertState::Resolved) {
            channels.push(AlertChannel::Alertmanager);
        }
        if let (Some(kinds), Some(kind)) = (&self.webhook, kind(state, alertname)) {
            let alert_listed = state != AlertState::Resolved
                || kind_of_alert(alertname).is_some_and(|k| kinds.contains(&k));
            if kinds.contains(&kind) && alert_listed {
                channels.push(AlertChannel::Webhook);
            }
        }
        channels
    }
}

/// The kind of a notification (`spec.alerts.webhook.notify`).
pub fn kind(state: AlertState, alertname: &str) -> Option<NotificationKind> {
    match state {
        AlertState::Firing => kind_of_alert(alertname),
        AlertState::Resolved => Some(NotificationKind::Resolved),
        AlertState::Notice => lifecycle::kind(alertname),
        AlertState::Unknown => None,
    }
}

/// The kind whose firing notification an alert's is.
fn kind_of_alert(alertname: &str) -> Option<NotificationKind> {
    Some(match alertname {
        desired::ROLLED_BACK => NotificationKind::RolledBack,
        desired::ROLLOUT_FAILED => NotificationKind::RolloutFailed,
        desired::ANALYSIS_INCONCLUSIVE => NotificationKind::AnalysisInconclusive,
        desired::METRIC_BREACH => NotificationKind::GuardBreach,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertChannel::{Alertmanager, Webhook};

    #[test]
    fn which_channel_gets_which_notification() {
        use AlertState::{Firing, Notice, Resolved};
        use NotificationKind as K;
        let only = |alertmanager: bool, kinds: Option<&[K]>| Routing {
            alertmanager,
            webhook: kinds.map(<[K]>::to_vec),
        };
        let default = only(true, Some(&K::ALERTS));
        let lifecycle = only(
            false,
            Some(&[K::RolloutStarted, K::Promoted, K::RolledBack]),
        );
        let with_resolved = only(false, Some(&[K::GuardBreach, K::Resolved]));
        let alertmanager_only = only(true, None);
        let everything = only(false, Some(&K::ALL));
        type Case<'a> = (&'a str, &'a Routing, AlertState, &'a str, Vec<AlertChannel>);
        let cases: Vec<Case<'_>> = vec![
            (
                "no notify: every alert to both, as before",
                &default,
                Firing,
                desired::METRIC_BREACH,
                vec![Alertmanager, Webhook],
            ),
            (
                "no notify: resolved to both",
                &default,
                Resolved,
                desired::ROLLED_BACK,
                vec![Alertmanager, Webhook],
            ),
            (
                "no notify: no notice",
                &default,
                Notice,
                lifecycle::ROLLOUT_STARTED,
                vec![],
            ),
            (
                "Alertmanager never gets a notice",
                &alertmanager_only,
                Notice,
                lifecycle::PROMOTED,
                vec![],
            ),
            (
                "a listed notice",
                &lifecycle,
                Notice,
                lifecycle::PROMOTED,
                vec![Webhook],
            ),
            (
                "a notice not listed",
                &lifecycle,
                Notice,
                lifecycle::CANARY_STEP,
                vec![],
            ),
            (
                "a listed alert",
                &lifecycle,
                Firing,
                desired::ROLLED_BACK,
                vec![Webhook],
            ),
            (
                "an alert not listed",
                &lifecycle,
                Firing,
                desired::METRIC_BREACH,
                vec![],
            ),
            (
                "Resolved not listed",
                &lifecycle,
                Resolved,
                desired::ROLLED_BACK,
                vec![],
            ),
            (
                "Resolved of a listed alert",
                &with_resolved,
                Resolved,
                desired::METRIC_BREACH,
                vec![Webhook],
            ),
            (
                "Resolved of an alert not listed",
                &with_resolved,
                Resolved,
                desired::ROLLED_BACK,
                vec![],
            ),
            (
                "an unknown notice",
                &everything,
                Notice,
                "ModelSomethingNew",
                vec![],
            ),
        ];
        for (what, routing, state, alertname, want) in cases {
            assert_eq!(routing.channels(state, alertname), want, "{what}");
        }
    }
}
