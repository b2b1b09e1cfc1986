//! Status of the metric analysis and of the alerts it raised.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

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
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
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
}

/// One check's verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
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
    /// ModelMetricBreach.
    pub alertname: String,
    /// warning or critical.
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
