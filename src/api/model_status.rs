//! The `ModelDeployment` status: what the operator observed and decided.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::tolerant::tolerant;

use super::analysis_status::{AlertNotification, AnalysisStatus, FiringAlert, MetricCheck};
use super::canary_rollout::CanaryStatus;

/// Observed state of a ModelDeployment. Written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The `metadata.generation` this status describes. Behind the object's
    /// generation means the operator has not acted on the latest spec yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// One-word summary: Pending, Progressing, Healthy, RolledBack, Degraded
    /// or Paused. Conditions carry the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// The model name being served (spec.model.name or metadata.name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,

    /// Model server pods, of every version.
    #[serde(default)]
    pub replicas: i32,

    /// Pods passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Pods already running the version the Deployment asks for.
    #[serde(default)]
    pub updated_replicas: i32,

    /// Pods ready for long enough to count as available.
    #[serde(default)]
    pub available_replicas: i32,

    /// "ready/desired", for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_summary: Option<String>,

    /// Label selector of the model pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// In-cluster URL of the model's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Revision the Deployment runs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i64>,

    /// Last revision that passed its gates; what a rollback returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<i64>,

    /// Revision the spec asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<i64>,

    /// Every revision still remembered (up to spec.revisionHistoryLimit),
    /// oldest first: what ran, when, and how it ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "history_schema")]
    pub history: Vec<HistoryEntry>,

    /// The metric analysis of the revision being rolled out or guarded: the
    /// latest value, baseline, bound and verdict of every metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,

    /// The canary of the revision being rolled out with the Canary
    /// strategy: its step, weight and whether it waits for promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,

    /// Pods of the revision rolling out that the scheduler cannot place,
    /// and why: absent when every pod has a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<UnschedulableStatus>,

    /// Alerts raised and not yet resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<FiringAlert>,

    /// Alert notifications (firing or resolved) not yet confirmed by every
    /// channel they go to, oldest first; retried until they are. At most 32
    /// are kept (the oldest are dropped beyond that).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_outbox: Vec<AlertNotification>,

    /// Standard conditions: Ready (the model serves at the desired capacity),
    /// Progressing (a rollout is under way) and Degraded (something needs a
    /// person's attention; the reason says what).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Pods the scheduler cannot place (`rollout.capacityGraceSeconds`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnschedulableStatus {
    /// The revision whose pods wait for a node.
    pub revision: i64,
    /// How many of its pods have none.
    pub pods: i32,
    /// InsufficientCapacity (nodes lack a resource) or NoMatchingNode (no
    /// node matches the pods' selector, affinity, tolerations or spread
    /// constraints).
    pub reason: String,
    /// The resources no node has enough of, e.g. nvidia.com/gpu.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub resources: Vec<String>,
    /// The scheduler's verdict in the operator's words.
    pub message: String,
    /// When the operator first saw the rollout unable to make any other
    /// progress (no pod terminating, every other pod available): the grace
    /// counts from here. Absent while the rollout still moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// One revision's story.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Revision number. A spec that returns to a version already in the
    /// history reuses its number.
    pub revision: i64,
    /// Model version of the revision.
    pub model_version: String,
    /// Server image of the revision.
    pub image: String,
    /// When the revision was first rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    /// When its latest rollout ended (became Stable, was rolled back, failed
    /// or was superseded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// How its latest rollout ended.
    pub outcome: Outcome,
    /// CamelCase cause of the outcome.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The outcome explained.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it last became the Stable revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,
    /// The metric checks as they stood when its rollout was decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<MetricCheck>,
    /// The `mlops.dev/retry` annotation when this revision last started
    /// rolling out; a failed revision is tried again only when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_token: Option<String>,
}

/// How a revision's rollout ended.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Outcome {
    /// Rolling out now.
    #[default]
    Progressing,
    /// Passed its gates; the version a rollback returns to.
    Stable,
    /// Failed and was replaced by the stable revision.
    RolledBack,
    /// Failed with nothing to roll back to (or automatic rollback off).
    Failed,
    /// Replaced by a newer revision.
    Superseded,
}

/// History entries are a map keyed by revision number.
fn history_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<HistoryEntry>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["revision"]),
    );
    schema
}

/// One-word summary of a ModelDeployment's state.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted; nothing serves yet.
    Pending,
    /// A new revision is rolling out.
    Progressing,
    /// The requested revision serves at the desired capacity.
    Healthy,
    /// The requested revision failed and the last stable one serves again.
    RolledBack,
    /// Needs attention: invalid spec, or a failed revision with nothing to go back to.
    Degraded,
    /// Held by `spec.paused`.
    Paused,
}

/// As status writes it; also the `outcome` label of
/// `model_operator_revision_outcomes_total`.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Conditions are a map keyed by type, so server-side apply merges them per
/// type and `kubectl wait --for=condition=…` finds them.
fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

tolerant!(
    Outcome,
    fallback = Superseded,
    [Progressing, Stable, RolledBack, Failed, Superseded]
);

tolerant!(
    Phase,
    fallback = Pending,
    [Pending, Progressing, Healthy, RolledBack, Degraded, Paused]
);
