//! Metric gates and alerting: the parts of a spec that talk to Prometheus,
//! Alertmanager and a webhook.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::notify_spec::{NotificationKind, WebhookFormat};

/// Go-style durations ("30s", "2m", "1h30m"), checked at `kubectl apply`.
pub(super) const DURATION_PATTERN: &str = "^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

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

    /// What `{{window}}` in a query stands for, as a duration such as "10m".
    /// By default the time since the revision started serving (its analysis
    /// started), at least 1m and at most 1h, so a comparison sees all of the
    /// new revision's requests and the stable revision's over the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) >= duration('1s') && duration(self) <= duration('24h')")).message("analysis.window must be a duration from 1s to 24h, such as 5m or 1h"))]
    pub window: Option<String>,
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
    #[x_kube(validation = Rule::new("self.matches('^https?://[^\\\\s/@?#]+(/[^\\\\s?#]*)?$')").message("analysis.prometheus.address must be an http:// or https:// URL without credentials, query or fragment"))]
    pub address: String,

    /// Seconds one query may take before it counts as Inconclusive.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: i32,

    /// A Secret key holding a bearer token sent with every query. The
    /// Secret must carry the label `mlops.dev/secret-type: prometheus-token`
    /// (the operator reads no other), and the token goes over https only
    /// unless the operator runs with `--allow-insecure-tokens`.
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

/// One metric gate: a PromQL query and the bounds its value must stay in,
/// or a statistical `comparison` with the stable revision.
///
/// Queries may use `{{namespace}}`, `{{name}}`, `{{model}}`, `{{version}}`,
/// `{{revision}}` and `{{window}}`. The same query with the stable revision's
/// version and revision gives the baseline for the relative bounds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.query) != has(self.comparison)").message("every analysis metric needs either a query (with bounds) or a comparison, not both"),
    validation = Rule::new("has(self.comparison) || has(self.min) || has(self.max) || has(self.maxIncreasePercent) || has(self.maxDecreasePercent)").message("every analysis metric needs a bound: min, max, maxIncreasePercent or maxDecreasePercent"),
    validation = Rule::new("!has(self.comparison) || !(has(self.min) || has(self.max) || has(self.maxIncreasePercent) || has(self.maxDecreasePercent))").message("a comparison metric takes no min, max, maxIncreasePercent or maxDecreasePercent: its verdict comes from the test"),
    validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("analysis metric min must not be greater than max")
)]
pub struct MetricGate {
    /// Name shown in status, events and alerts (the `metric` label).
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$')").message("analysis metric names must be lowercase letters, digits, '-' or '_', starting and ending with a letter or digit"))]
    pub name: String,

    /// PromQL instant query that returns one number (not with `comparison`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub query: Option<String>,

    /// Compare the new revision with the stable one statistically, instead
    /// of `query` and bounds (see docs/analysis.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonSpec>,

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

/// A statistical comparison of the new revision with the stable one: the
/// same queries run with each revision's `{{version}}` and `{{revision}}` over
/// the same `{{window}}`. Fail: worse than stable (by more than `margin`)
/// with `confidence`; Pass: the data rules that out with at least
/// `minSamples` on both sides; otherwise Inconclusive while collecting.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.test != 'TwoProportions' || (has(self.failures) && has(self.total) && has(self.margin))").message("comparison test TwoProportions needs failures, total and margin"),
    validation = Rule::new("self.test != 'TwoProportions' || (!has(self.buckets) && !has(self.worseWhen))").message("comparison test TwoProportions takes no buckets or worseWhen (those are for MannWhitney)"),
    validation = Rule::new("self.test != 'MannWhitney' || has(self.buckets)").message("comparison test MannWhitney needs buckets"),
    validation = Rule::new("self.test != 'MannWhitney' || (!has(self.failures) && !has(self.total) && !has(self.margin))").message("comparison test MannWhitney takes no failures, total or margin (those are for TwoProportions)")
)]
pub struct ComparisonSpec {
    /// TwoProportions (failures out of requests) or MannWhitney (histogram
    /// buckets).
    pub test: ComparisonTest,

    /// TwoProportions: PromQL counting failed requests in `{{window}}`, one
    /// number, e.g. `sum(increase(http_requests_total{model_version="{{version}}",code=~"5.."}[{{window}}]))`
    /// (`model_version` is a label the scrape must add: docs/serving.md,
    /// "Metrics the gates query"). An empty result counts as 0 failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub failures: Option<String>,

    /// TwoProportions: PromQL counting all requests in `{{window}}`, one
    /// number. An empty result counts as no requests yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub total: Option<String>,

    /// TwoProportions: the smallest regression that matters. A percentage
    /// of the stable revision's failure rate ("10%": 1.0% may become 1.1%),
    /// or an absolute difference of rates below 1 ("0.002": 1.0% may become
    /// 1.2%). "0" fails any regression the data is sure of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,4}(\\\\.[0-9]+)?%$') || self.matches('^0(\\\\.[0-9]+)?$')").message("comparison.margin must be a percentage of the stable revision's rate such as 10%, or an absolute difference of rates below 1 such as 0.002"))]
    pub margin: Option<String>,

    /// MannWhitney: PromQL returning cumulative histogram buckets in
    /// `{{window}}`, one series per `le` label including "+Inf", e.g.
    /// `sum by (le) (increase(http_request_duration_seconds_bucket{model_version="{{version}}"}[{{window}}]))`
    /// (`model_version`: see `failures`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub buckets: Option<String>,

    /// MannWhitney: which direction of shift is a regression (Higher for
    /// latency, Lower for a score). Default Higher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worse_when: Option<WorseWhen>,

    /// How sure a verdict must be, from 0.5 to 0.9999: a Fail needs the
    /// regression (beyond the margin) at this confidence, one-sided.
    #[serde(default = "default_confidence")]
    #[x_kube(validation = Rule::new("self >= 0.5 && self <= 0.9999").message("comparison.confidence must be between 0.5 and 0.9999, such as 0.95"))]
    pub confidence: f64,

    /// Requests (TwoProportions) or observations (MannWhitney) each revision
    /// needs in the window before any verdict; below it the metric is
    /// Inconclusive ("collecting"), which counts against
    /// `inconclusiveLimit` only after the bake time.
    #[serde(default = "default_min_samples")]
    #[schemars(range(min = 10, max = 1_000_000_000_000i64))]
    pub min_samples: i64,
}

fn default_confidence() -> f64 {
    0.95
}

fn default_min_samples() -> i64 {
    1000
}

/// The statistical test of a comparison.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ComparisonTest {
    /// Failures out of requests: is the new failure rate higher than the
    /// stable one by more than the margin?
    #[default]
    TwoProportions,
    /// Histogram buckets: is the new distribution shifted the bad way?
    MannWhitney,
}

impl std::fmt::Display for ComparisonTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// MannWhitney: which direction of a distribution's shift is a regression
/// (Higher for latency, Lower for a score). Default Higher.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum WorseWhen {
    /// Higher values are worse (latency).
    #[default]
    Higher,
    /// Lower values are worse (a score).
    Lower,
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

    /// A webhook receiving each alert, and the lifecycle notices it asks
    /// for, as JSON POSTs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
}

/// An Alertmanager to post alerts to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerSpec {
    /// Base URL, e.g. `http://alertmanager.monitoring:9093`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^\\\\s/@?#]+(/[^\\\\s?#]*)?$')").message("alerts.alertmanager.url must be an http:// or https:// URL without credentials, query or fragment"))]
    pub url: String,
}

/// A webhook whose URL is a secret (it often embeds a token).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// The Secret key holding the URL. The URL is never logged. The Secret
    /// must carry the label `mlops.dev/secret-type: alert-webhook` (the
    /// operator reads no other).
    pub url_secret_ref: SecretKeyRef,

    /// The body's shape: Alertmanager (default; Alertmanager's webhook
    /// JSON), Slack, Teams (an Adaptive Card) or Generic (one JSON object,
    /// docs/notification.schema.json). Slack and Teams refuse the
    /// Alertmanager shape.
    #[serde(default)]
    pub format: WebhookFormat,

    /// Which notifications this webhook gets, each kind at most once.
    /// Unset: the alerts (RolledBack, RolloutFailed, AnalysisInconclusive,
    /// GuardBreach, and Resolved), as before this field existed. Set:
    /// exactly the kinds listed; Resolved then covers only the listed alert
    /// kinds. Lifecycle notices (RolloutStarted, CanaryStep,
    /// AwaitingPromotion, Promoted) are sent only when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 9), extend("x-kubernetes-list-type" = "set"))]
    pub notify: Option<Vec<NotificationKind>>,
}

impl WebhookSpec {
    /// The kinds this webhook gets.
    pub fn kinds(&self) -> &[NotificationKind] {
        match &self.notify {
            Some(kinds) => kinds,
            None => &NotificationKind::ALERTS,
        }
    }
}
