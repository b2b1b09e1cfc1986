//! What a notification says to a person, and the POST bodies of the
//! webhook formats that carry one message each (Slack, Teams, Generic).
//! Pure. Every text comes from status, which never holds what a foreign
//! endpoint answered (docs/security.md), and is cut to the receiver's
//! limits, so a body is bounded whatever status holds.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use super::outbox;
use crate::api::{AlertNotification, AlertState, NotificationKind};

/// Which ModelDeployment a notification is about.
pub struct About<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub model: &'a str,
}

/// Slack: a header block's text is at most 150 characters, a section's
/// 3000 (Block Kit reference); `text` is kept to the same 3000.
const SLACK_HEADER: usize = 150;
const SLACK_SECTION: usize = 3000;
/// Teams: no hard limit per TextBlock, but a card is at most 28 KB; a
/// notification's message is at most 1 KiB in status, so 4000 is room.
const TEAMS_TEXT: usize = 4000;
/// A fact's or field's value (a version, a reason, a key).
const FIELD: usize = 256;

/// The one-line headline of a kind.
fn headline(kind: NotificationKind, alertname: &str) -> String {
    match kind {
        NotificationKind::RolloutStarted => "Rollout started".into(),
        NotificationKind::CanaryStep => "Canary step".into(),
        NotificationKind::AwaitingPromotion => "Awaiting promotion".into(),
        NotificationKind::Promoted => "Promoted".into(),
        NotificationKind::RolledBack => "Rolled back".into(),
        NotificationKind::RolloutFailed => "Rollout failed".into(),
        NotificationKind::AnalysisInconclusive => "Analysis inconclusive".into(),
        NotificationKind::GuardBreach => "Guard breach".into(),
        NotificationKind::Resolved => format!("Resolved: {alertname}"),
    }
}

// docs/notification.schema.json is generated from this type (`make crds`).
/// One notification of a model-operator webhook with `format: Generic`,
/// one per POST.
#[derive(Serialize, JsonSchema, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "model-operator webhook notification (format: Generic)")]
pub struct GenericNotification {
    /// The shape's version; a change that breaks receivers gets a new one.
    pub version: GenericVersion,
    /// What happened (`spec.alerts.webhook.notify` kinds).
    pub kind: NotificationKind,
    /// `firing` or `resolved` for an alert, `notice` for a lifecycle notice.
    pub state: GenericState,
    /// The same for every attempt, restart and replica: deduplicate by it.
    pub idempotency_key: String,
    /// The alert's or notice's name, e.g. ModelRolledBack or ModelPromoted.
    pub alertname: String,
    /// info, warning or critical.
    pub severity: String,
    /// One line: ModelDeployment, what happened, revision and version.
    pub title: String,
    /// The whole explanation (for a breach: the value, the bound and the
    /// query), at most 1 KiB.
    pub message: String,
    /// The ModelDeployment's namespace.
    pub namespace: String,
    /// The ModelDeployment's name.
    pub model_deployment: String,
    /// `spec.model.name`, or the ModelDeployment's name.
    pub model: String,
    /// The revision it is about.
    pub revision: i64,
    /// That revision's model version.
    pub model_version: String,
    /// CamelCase cause, e.g. CrashLoopBackOff or PostPromotionBreach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The metric it is about, or the canary step (`step-2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// When the operator decided it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
}

/// The version of the Generic shape.
#[derive(Serialize, JsonSchema, Debug, PartialEq, Clone, Copy)]
pub enum GenericVersion {
    #[serde(rename = "v1")]
    V1,
}

/// A Generic notification's state.
#[derive(Serialize, JsonSchema, Debug, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum GenericState {
    Firing,
    Resolved,
    Notice,
}

/// docs/notification.schema.json, as `make crds` writes it.
pub fn generic_schema() -> String {
    let schema = schemars::schema_for!(GenericNotification);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// The notification for people: `None` for one of a state or kind this
/// binary does not know (never sent as something it is not).
pub fn generic(about: &About<'_>, n: &AlertNotification) -> Option<GenericNotification> {
    let kind = outbox::kind(n.state, &n.alert.alertname)?;
    let state = match n.state {
        AlertState::Firing => GenericState::Firing,
        AlertState::Resolved => GenericState::Resolved,
        AlertState::Notice => GenericState::Notice,
        AlertState::Unknown => return None,
    };
    let a = &n.alert;
    let version = if a.model_version.is_empty() {
        String::new()
    } else {
        format!(" (model {})", a.model_version)
    };
    let title = format!(
        "{}/{}: {} · revision {}{version}",
        about.namespace,
        about.name,
        headline(kind, &a.alertname),
        a.revision
    );
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(GenericNotification {
        version: GenericVersion::V1,
        kind,
        state,
        idempotency_key: n.key.clone(),
        alertname: a.alertname.clone(),
        severity: a.severity.clone(),
        title,
        message: if a.message.is_empty() {
            headline(kind, &a.alertname)
        } else {
            a.message.clone()
        },
        namespace: about.namespace.to_string(),
        model_deployment: about.name.to_string(),
        model: about.model.to_string(),
        revision: a.revision,
        model_version: a.model_version.clone(),
        reason: some(&a.reason),
        metric: some(&a.metric),
        decided_at: n.decided_at.as_ref().map(|t| t.0.to_string()),
    })
}

/// (label, value) pairs shown under the message, empty values left out.
fn facts(g: &GenericNotification) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Model", g.model.clone()),
        ("Version", g.model_version.clone()),
        ("Revision", g.revision.to_string()),
        (
            "ModelDeployment",
            format!("{}/{}", g.namespace, g.model_deployment),
        ),
    ];
    if let Some(reason) = &g.reason {
        facts.push(("Reason", reason.clone()));
    }
    if let Some(metric) = &g.metric {
        facts.push(("Metric", metric.clone()));
    }
    facts.push(("Key", g.idempotency_key.clone()));
    facts
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, cut(&v, FIELD)))
        .collect()
}

/// A Slack incoming-webhook body: `text` (the notification line and
/// fallback) and Block Kit `blocks`, all plain text so nothing a spec
/// holds can mention a channel or format a link.
pub fn slack(g: &GenericNotification) -> Value {
    let fields: Vec<Value> = facts(g)
        .into_iter()
        .map(|(k, v)| json!({"type": "plain_text", "text": format!("{k}: {v}")}))
        .collect();
    json!({
        "text": cut(&slack_escape(&format!("{}: {}", g.title, g.message)), SLACK_SECTION),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": cut(&g.title, SLACK_HEADER)}},
            {"type": "section", "text": {"type": "plain_text", "text": cut(&g.message, SLACK_SECTION)}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [
                {"type": "plain_text", "text": format!("model-operator · {} · {}", g.kind, g.severity)}
            ]},
        ],
    })
}

/// `text` is mrkdwn: `&`, `<` and `>` are the characters Slack asks to
/// escape, so `<!channel>` in a message stays text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Teams workflow (or incoming webhook) body: a message with one
/// Adaptive Card 1.4.
pub fn teams(g: &GenericNotification) -> Value {
    let color = match (g.state, g.severity.as_str()) {
        (GenericState::Resolved, _) => "Good",
        (_, "critical") => "Attention",
        (_, "warning") => "Warning",
        _ => "Default",
    };
    let facts: Vec<Value> = facts(g)
        .into_iter()
        .map(|(k, v)| json!({"title": k, "value": v}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": cut(&g.title, TEAMS_TEXT), "weight": "Bolder",
                     "size": "Medium", "color": color, "wrap": true},
                    {"type": "TextBlock", "text": cut(&g.message, TEAMS_TEXT), "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    })
}

/// `text` cut to at most `max` characters, with "…" when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{desired, lifecycle};
    use crate::api::FiringAlert;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    const ABOUT: About<'static> = About {
        namespace: "prod",
        name: "fraud",
        model: "fraud-detector",
    };

    fn notification(state: AlertState, alertname: &str, message: &str) -> AlertNotification {
        AlertNotification {
            state,
            alert: FiringAlert {
                alertname: alertname.into(),
                severity: "critical".into(),
                revision: 3,
                model_version: "2.1.0".into(),
                metric: "error-rate".into(),
                reason: "PostPromotionBreach".into(),
                message: message.into(),
                since: None,
            },
            pending: vec![],
            key: "k1".into(),
            decided_at: Some(Time(Timestamp::from_second(1_800_000_000).unwrap())),
        }
    }

    fn breach() -> AlertNotification {
        notification(
            AlertState::Firing,
            desired::METRIC_BREACH,
            "stable revision 3 breaches metric error-rate: 0.12 > max 0.05; bound max 0.05; query: rate(errors[5m])",
        )
    }

    #[test]
    fn titles_and_kinds() {
        type Case<'a> = (AlertState, &'a str, NotificationKind, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (
                AlertState::Firing,
                desired::METRIC_BREACH,
                NotificationKind::GuardBreach,
                "prod/fraud: Guard breach · revision 3 (model 2.1.0)",
            ),
            (
                AlertState::Firing,
                desired::ROLLED_BACK,
                NotificationKind::RolledBack,
                "prod/fraud: Rolled back · revision 3 (model 2.1.0)",
            ),
            (
                AlertState::Resolved,
                desired::ROLLED_BACK,
                NotificationKind::Resolved,
                "prod/fraud: Resolved: ModelRolledBack · revision 3 (model 2.1.0)",
            ),
            (
                AlertState::Notice,
                lifecycle::ROLLOUT_STARTED,
                NotificationKind::RolloutStarted,
                "prod/fraud: Rollout started · revision 3 (model 2.1.0)",
            ),
            (
                AlertState::Notice,
                lifecycle::AWAITING_PROMOTION,
                NotificationKind::AwaitingPromotion,
                "prod/fraud: Awaiting promotion · revision 3 (model 2.1.0)",
            ),
            (
                AlertState::Notice,
                lifecycle::PROMOTED,
                NotificationKind::Promoted,
                "prod/fraud: Promoted · revision 3 (model 2.1.0)",
            ),
        ];
        for (state, alertname, kind, title) in cases {
            let g = generic(&ABOUT, &notification(state, alertname, "m")).unwrap();
            assert_eq!((g.kind, g.title.as_str()), (kind, title), "{alertname}");
        }
        assert_eq!(
            generic(&ABOUT, &notification(AlertState::Unknown, "X", "m")),
            None
        );
        assert_eq!(
            generic(&ABOUT, &notification(AlertState::Notice, "ModelNew", "m")),
            None,
            "a notice this binary does not know is not sent"
        );
    }

    #[test]
    fn a_breach_explains_itself_in_every_format() {
        let g = generic(&ABOUT, &breach()).unwrap();
        let slack = slack(&g);
        let teams = teams(&g);
        for (format, body) in [("slack", &slack), ("teams", &teams)] {
            let text = body.to_string();
            for needed in [
                "fraud-detector",
                "2.1.0",
                "revision 3",
                "PostPromotionBreach",
                "0.12 > max 0.05",
                "rate(errors[5m])",
                "k1",
            ] {
                assert!(text.contains(needed), "{format} lacks {needed}: {text}");
            }
        }
        let generic = serde_json::to_value(&g).unwrap();
        assert_eq!(generic["kind"], "GuardBreach");
        assert_eq!(generic["state"], "firing");
        assert_eq!(generic["idempotencyKey"], "k1");
        assert_eq!(generic["modelDeployment"], "fraud");
        assert_eq!(generic["version"], "v1");
        assert_eq!(generic["decidedAt"], "2027-01-15T08:00:00Z");
    }

    #[test]
    fn slack_bodies_are_what_slack_accepts() {
        let mut long = breach();
        long.alert.message = format!("<!channel> & {}", "x".repeat(5000));
        long.alert.model_version = "v".repeat(300);
        let body = slack(&generic(&ABOUT, &long).unwrap());
        let text = body["text"].as_str().unwrap();
        assert!(text.starts_with("prod/fraud: Guard breach"));
        assert!(text.contains("&lt;!channel&gt; &amp;"), "{text}");
        assert!(text.chars().count() <= SLACK_SECTION);
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= SLACK_HEADER);
        assert!(blocks[1]["text"]["text"].as_str().unwrap().chars().count() <= SLACK_SECTION);
        let fields = blocks[2]["fields"].as_array().unwrap();
        assert!(fields.len() <= 10, "Slack takes at most 10 fields");
        for block in blocks {
            assert!(block["type"].is_string());
        }
        for field in fields {
            let text = field["text"].as_str().unwrap();
            assert!(!text.is_empty() && text.chars().count() <= 2000);
        }
    }

    #[test]
    fn teams_bodies_are_one_adaptive_card() {
        let mut resolved = breach();
        resolved.state = AlertState::Resolved;
        let body = teams(&generic(&ABOUT, &resolved).unwrap());
        assert_eq!(body["type"], "message");
        let attachments = body["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        assert_eq!(
            attachments[0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachments[0]["content"];
        assert_eq!(
            (card["type"].as_str(), card["version"].as_str()),
            (Some("AdaptiveCard"), Some("1.4"))
        );
        let body = card["body"].as_array().unwrap();
        assert_eq!(body[0]["color"], "Good", "resolved shows as good news");
        assert_eq!(body[2]["type"], "FactSet");
    }

    #[test]
    fn the_documented_schema_is_the_code() {
        let committed = include_str!("../../docs/notification.schema.json");
        assert!(
            committed == generic_schema(),
            "docs/notification.schema.json is stale: run `make crds`"
        );
    }
}
