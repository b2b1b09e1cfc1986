//! Metric gates and alerting: the parts of a spec that talk to Prometheus,
//! Alertmanager and a webhook.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Go-style durations ("30s", "2m", "1h30m"), checked at `kubectl apply`.
const DURATION_PATTERN: &str = "^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Metric gates on Prometheus: every metric is checked every `interval` while
/// a revision rolls out and for `bakeTime` after all its pods are updated. A
/// revision becomes Stable only when every metric passed on real data; a
/// failed gate rolls it back, missing data never promotes it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.metrics.all(m, self.metrics.exists_one(o, o.name == m.name))").message("analysis.metrics: every metric needs a unique name"))]
pub struct AnalysisSpec {
    /// Where to query.
    pub prometheus: PrometheusSpec,

    /// How often each metric is checked, as a duration such as "30s".
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) >= duration('1s') && duration(self) <= duration('1h')")).message("analysis.interval must be a duration from 1s to 1h, such as 30s or 2m"))]
    pub interval: String,

    /// How long checks go on after every pod runs the new revision, before it
    /// can become Stable ("0s" promotes as soon as every metric passed once).
    #[serde(default = "default_bake_time")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) <= duration('24h')")).message("analysis.bakeTime must be a duration up to 24h, such as 0s, 2m or 1h"))]
    pub bake_time: String,

    /// Failed checks tolerated per metric; one more rolls the revision back.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub failure_limit: i32,

    /// What a check without data counts as (an empty result or NaN).
    /// Prometheus errors and timeouts always count as Inconclusive. Even with
    /// `Pass`, a revision is promoted only after every metric passed on real
    /// data at least once.
    #[serde(default)]
    pub on_no_data: OnNoData,

    /// Inconclusive checks tolerated per metric; one more stops the rollout
    /// where it is (phase Paused, alert) until the version changes or
    /// `kubectl model retry` restarts the analysis. It never promotes.
    #[serde(default = "default_inconclusive_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub inconclusive_limit: i32,

    /// The gates. Each query must return one number.
    #[schemars(length(min = 1, max = 20))]
    pub metrics: Vec<MetricGate>,

    /// Keep checking the Stable revision after promotion.
    #[serde(default)]
    pub post_promotion: PostPromotionSpec,
}

fn default_interval() -> String {
    "30s".into()
}

fn default_bake_time() -> String {
    "2m".into()
}

fn default_inconclusive_limit() -> i32 {
    3
}

/// The Prometheus server the metrics are queried from (its HTTP API).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^\\\\s/]+(/\\\\S*)?$')").message("analysis.prometheus.address must be an http:// or https:// URL"))]
    pub address: String,

    /// Seconds one query may take before it counts as Inconclusive.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: i32,

    /// A Secret key holding a bearer token sent with every query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
}

fn default_timeout_seconds() -> i32 {
    5
}

/// A key of a Secret in the ModelDeployment's namespace. The operator reads
/// it by name only (it cannot list Secrets) and never logs its value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What a check without data counts as.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum OnNoData {
    /// Counts towards `inconclusiveLimit`.
    #[default]
    Inconclusive,
    /// Counts towards `failureLimit`.
    Fail,
    /// Counts as neither (promotion still needs real data).
    Pass,
}

/// One metric gate: a PromQL query and the bounds its value must stay in.
///
/// The query may use `{{namespace}}`, `{{name}}`, `{{model}}`, `{{version}}`
/// and `{{revision}}`. The same query with the stable revision's version and
/// revision gives the baseline for the relative bounds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.min) || has(self.max) || has(self.maxIncreasePercent) || has(self.maxDecreasePercent)").message("every analysis metric needs a bound: min, max, maxIncreasePercent or maxDecreasePercent"),
    validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("analysis metric min must not be greater than max")
)]
pub struct MetricGate {
    /// Name shown in status, events and alerts (the `metric` label).
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$')").message("analysis metric names must be lowercase letters, digits, '-' or '_', starting and ending with a letter or digit"))]
    pub name: String,

    /// PromQL instant query that returns one number.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,

    /// The value must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,

    /// The value must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,

    /// The value may exceed the stable revision's value by at most this many
    /// percent (for metrics where lower is better, e.g. error rate, latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("maxIncreasePercent must not be negative"))]
    pub max_increase_percent: Option<f64>,

    /// The value may fall below the stable revision's value by at most this
    /// many percent (for metrics where higher is better, e.g. accuracy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 100.0").message("maxDecreasePercent must be between 0 and 100"))]
    pub max_decrease_percent: Option<f64>,
}

/// Guarding a revision after it became Stable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostPromotionSpec {
    /// Keep checking the absolute bounds (min, max) of every metric on the
    /// Stable revision, every `interval`. Relative bounds have no baseline
    /// once the previous revision stopped serving.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// What a breach (more than `failureLimit` failed checks in a row) does.
    #[serde(default)]
    pub action: BreachAction,
}

impl Default for PostPromotionSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            action: BreachAction::default(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// What a post-promotion breach does.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum BreachAction {
    /// Raise an alert (Event, Alertmanager, webhook); resolved when the
    /// metric is back in bounds.
    #[default]
    Alert,
    /// Alert and go back to the previous Stable revision.
    Rollback,
}

/// Where alerts go besides Kubernetes Events (always sent).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AlertsSpec {
    /// An Alertmanager (its v2 API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerSpec>,

    /// A webhook receiving each alert as a JSON POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
}

/// An Alertmanager to post alerts to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerSpec {
    /// Base URL, e.g. `http://alertmanager.monitoring:9093`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^\\\\s/]+(/\\\\S*)?$')").message("alerts.alertmanager.url must be an http:// or https:// URL"))]
    pub url: String,
}

/// A webhook whose URL is a secret (it often embeds a token).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// The Secret key holding the URL. The URL is never logged.
    pub url_secret_ref: SecretKeyRef,
}
