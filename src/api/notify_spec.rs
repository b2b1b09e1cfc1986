//! What a webhook is sent besides alerts, and in which shape
//! (`spec.alerts.webhook.notify`, `spec.alerts.webhook.format`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A kind of notification a webhook can ask for. The first four are
/// lifecycle notices; the others follow the alerts of the same name.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum NotificationKind {
    /// A revision started rolling out (a new version, a retry, a return).
    RolloutStarted,
    /// A canary reached a step (its share of the traffic changed).
    CanaryStep,
    /// A canary waits at a pause without duration for
    /// `kubectl model promote`.
    AwaitingPromotion,
    /// A revision passed and became Stable.
    Promoted,
    /// The `ModelRolledBack` alert fired: a revision was rolled back.
    RolledBack,
    /// The `ModelRolloutFailed` alert fired: a revision failed with nothing
    /// to roll back to.
    RolloutFailed,
    /// The `ModelAnalysisInconclusive` alert fired: the rollout stopped for
    /// lack of answers.
    AnalysisInconclusive,
    /// The `ModelMetricBreach` alert fired: the Stable revision breaches a
    /// metric gate after promotion.
    GuardBreach,
    /// An alert of a kind listed here stopped firing.
    Resolved,
}

impl NotificationKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [NotificationKind; 9] = [
        Self::RolloutStarted,
        Self::CanaryStep,
        Self::AwaitingPromotion,
        Self::Promoted,
        Self::RolledBack,
        Self::RolloutFailed,
        Self::AnalysisInconclusive,
        Self::GuardBreach,
        Self::Resolved,
    ];

    /// What a webhook without `notify` gets: the alerts, as before `notify`
    /// existed.
    pub const ALERTS: [NotificationKind; 5] = [
        Self::RolledBack,
        Self::RolloutFailed,
        Self::AnalysisInconclusive,
        Self::GuardBreach,
        Self::Resolved,
    ];
}

impl std::fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The shape of a webhook's POST body.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum WebhookFormat {
    /// Alertmanager's webhook shape, several notifications per POST, each
    /// with its `idempotencyKey` (what a webhook got before `format`).
    #[default]
    Alertmanager,
    /// A Slack incoming webhook: `text` and `blocks`, one message per POST.
    Slack,
    /// A Microsoft Teams workflow or incoming webhook: an Adaptive Card, one
    /// per POST.
    Teams,
    /// One JSON object per POST, described by docs/notification.schema.json.
    Generic,
}
