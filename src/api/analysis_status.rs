//! Status of the metric analysis and of the alerts it raised.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::tolerant::tolerant;

/// The analysis of one revision: the latest check of every metric and where
/// the analysis stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// Revision the checks are about.
    pub revision: i64,
    /// Where the analysis stands.
    pub phase: AnalysisPhase,
    /// The state explained, e.g. "baking: 40s of 2m left; 2/2 metrics pass".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the analysis of this revision (re)started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When every pod first ran the revision; the bake time counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_started_at: Option<Time>,
    /// The `mlops.dev/retry` annotation the analysis started with; changing
    /// it restarts a stopped analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_token: Option<String>,
    /// The latest check of each metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "checks_schema")]
    pub metrics: Vec<MetricCheck>,
}

/// Where a revision's analysis stands.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AnalysisPhase {
    /// Checking while pods are being replaced.
    #[default]
    Running,
    /// Every pod runs the revision; checking until the bake time is over.
    Baking,
    /// Every gate passed; the revision was promoted.
    Passed,
    /// A gate failed more than `failureLimit` times.
    Failed,
    /// More than `inconclusiveLimit` checks had no answer: the rollout
    /// stopped and waits for a person.
    Inconclusive,
    /// The Stable revision is being watched after promotion.
    Guarding,
}

impl std::fmt::Display for AnalysisPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The latest check of one metric, with everything needed to see why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricCheck {
    /// The metric's name from the spec.
    pub name: String,
    /// Pass, Fail or Inconclusive.
    pub verdict: Verdict,
    /// The value the query returned; absent when it returned no number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The stable revision's value of the same query, when a relative bound
    /// needed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// The bounds applied, e.g. "<= 0.05 and <= 0.048 (baseline 0.04 +20%)".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bound: String,
    /// The verdict explained.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The query as sent, variables filled in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// When the check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
    /// Checks of this metric that passed on real data.
    #[serde(default)]
    pub passed: i32,
    /// Failed checks counted against `failureLimit` (after promotion: in a row).
    #[serde(default)]
    pub failed: i32,
    /// Checks without an answer counted against `inconclusiveLimit`.
    #[serde(default)]
    pub inconclusive: i32,
    /// A comparison's evidence: sample sizes, the difference with its
    /// bounds, the p-value and the test. `value` and `baseline` hold the
    /// failure rates (TwoProportions) or medians (MannWhitney).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<ComparisonEvidence>,
}

/// What a comparison of the new revision with the stable one found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonEvidence {
    /// The test used.
    pub test: crate::api::ComparisonTest,
    /// Collecting, Undecided, Worse or NotWorse.
    pub finding: Finding,
    /// The new revision's requests (TwoProportions) or observations
    /// (MannWhitney) in the window.
    pub samples: i64,
    /// The stable revision's, over the same window.
    pub stable_samples: i64,
    /// Samples each side needs before a verdict.
    pub min_samples: i64,
    /// The new revision's failures (TwoProportions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<i64>,
    /// The stable revision's failures (TwoProportions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_failures: Option<i64>,
    /// Estimated difference, positive when the new revision is worse:
    /// failure rate minus the stable one's (TwoProportions), or Cliff's
    /// delta from -1 to 1 (MannWhitney).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<f64>,
    /// Lower bound of the difference, one-sided at `confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_bound: Option<f64>,
    /// Upper bound of the difference, one-sided at `confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_bound: Option<f64>,
    /// The margin as a difference of rates (TwoProportions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// One-sided p-value of "not worse (beyond the margin)": small values
    /// mean a regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The confidence asked for.
    pub confidence: f64,
}

/// Where a comparison stands.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Finding {
    /// A side has fewer than `minSamples`: no verdict yet.
    #[default]
    Collecting,
    /// Enough samples, but the data allows both "worse beyond the margin"
    /// and "not": more data will tell.
    Undecided,
    /// Worse than stable (beyond the margin) at the confidence: Fail.
    Worse,
    /// The data rules a regression (beyond the margin) out: Pass.
    NotWorse,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One check's verdict.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Verdict {
    /// Within every bound.
    Pass,
    /// Outside a bound.
    Fail,
    /// No answer: no data, NaN, a Prometheus error or a timeout.
    #[default]
    Inconclusive,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// An alert the operator raised and has not resolved yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FiringAlert {
    /// ModelRolledBack, ModelRolloutFailed, ModelAnalysisInconclusive or
    /// ModelMetricBreach; in a notice, ModelRolloutStarted, ModelCanaryStep,
    /// ModelAwaitingPromotion or ModelPromoted.
    pub alertname: String,
    /// warning or critical; info in a notice.
    pub severity: String,
    /// The revision it is about.
    pub revision: i64,
    /// That revision's model version.
    pub model_version: String,
    /// The metric it is about, when one is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metric: String,
    /// CamelCase cause, e.g. CrashLoopBackOff or AnalysisFailed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What happened, for a person.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it started firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

impl FiringAlert {
    /// Two alerts with the same identity are the same alert, whatever their
    /// message says now.
    pub fn same_alert(&self, other: &Self) -> bool {
        self.alertname == other.alertname
            && self.revision == other.revision
            && self.metric == other.metric
    }
}

/// A notification about an alert (it started firing, or it resolved), or a
/// lifecycle notice for the webhook, that a channel has not confirmed yet.
/// Written with the decision that raised it and removed per channel once
/// that channel answered 2xx, so a failed delivery, a restart or another
/// replica taking over sends it again (docs/analysis.md, "Delivery").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertNotification {
    /// Firing, Resolved or Notice.
    pub state: AlertState,
    /// The alert as it stood when the notification was decided.
    pub alert: FiringAlert,
    /// Channels that have not confirmed it yet: Alertmanager, Webhook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<AlertChannel>,
    /// The same for every attempt, restart and replica: webhook receivers
    /// deduplicate repeats by it (`idempotencyKey` in the payload).
    pub key: String,
    /// When it was decided; a resolved alert's `endsAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
}

/// What a notification says about its alert.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AlertState {
    /// It started firing.
    #[default]
    Firing,
    /// It stopped firing.
    Resolved,
    /// A lifecycle notice for the webhook (`alerts.webhook.notify`): the
    /// "alert" is what it is about (alertname `ModelRolloutStarted`,
    /// `ModelCanaryStep`, `ModelAwaitingPromotion` or `ModelPromoted`);
    /// nothing fires or resolves.
    Notice,
    /// A state this operator does not know (written by a newer one): the
    /// notification is dropped, never sent as something it is not.
    #[schemars(skip)]
    Unknown,
}

/// Where alerts are sent besides Events.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum AlertChannel {
    /// `spec.alerts.alertmanager`.
    Alertmanager,
    /// `spec.alerts.webhook`.
    Webhook,
    /// A channel this operator does not know (written by a newer one):
    /// dropped from `pending`.
    #[schemars(skip)]
    Unknown,
}

impl std::fmt::Display for AlertChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Checks are a map keyed by metric name.
fn checks_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<MetricCheck>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["name"]),
    );
    schema
}

tolerant!(
    AnalysisPhase,
    fallback = Running,
    [Running, Baking, Passed, Failed, Inconclusive, Guarding]
);

tolerant!(
    Finding,
    fallback = Collecting,
    [Collecting, Undecided, Worse, NotWorse]
);

tolerant!(Verdict, fallback = Inconclusive, [Pass, Fail, Inconclusive]);

tolerant!(
    AlertState,
    fallback = Unknown,
    [Firing, Resolved, Notice, Unknown]
);

tolerant!(
    AlertChannel,
    fallback = Unknown,
    [Alertmanager, Webhook, Unknown]
);
