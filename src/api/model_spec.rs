//! The `ModelDeployment` spec: what a user asks for.
//!
//! Validation that the API server can do lives here, as schema bounds and CEL
//! rules, so that a bad manifest is refused at `kubectl apply` with a message a
//! person understands. Doc comments become `kubectl explain` output.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::analysis_spec::{AlertsSpec, AnalysisSpec};
use super::autoscaling_spec::AutoscalingSpec;
use super::canary_rollout::{CanarySpec, RolloutStrategy};
use super::disruption_budget::DisruptionBudgetSpec;
use super::model_status::ModelDeploymentStatus;
use super::server_spec::ServerSpec;

/// A machine-learning model served on Kubernetes, rolled out safely.
///
/// The operator turns it into a Deployment running the model server, a Service
/// in front of it and, when asked for, a HorizontalPodAutoscaler and a
/// PodDisruptionBudget.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mlops.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    plural = "modeldeployments",
    shortname = "mdep",
    category = "all",
    namespaced,
    status = "ModelDeploymentStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".status.model"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.model.version"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.readySummary"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Canary","type":"string","jsonPath":".status.canary.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    validation = Rule::new("size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be at most 63 lowercase letters, digits or '-', start with a letter and end with a letter or digit: it names the model's Service"),
    validation = Rule::new("!has(self.spec.server.ports) || self.spec.server.ports.all(p, p.containerPort != (has(self.spec.service) && has(self.spec.service.port) ? self.spec.service.port : 80))")
        .message("spec.server.ports may not use service.port's number: each named port is also a Service port of that number"),
    validation = Rule::new("!has(self.spec.autoscaling) || !has(self.spec.rollout) || !has(self.spec.rollout.canary) || !has(self.spec.rollout.canary.dynamicStableScale) || !self.spec.rollout.canary.dynamicStableScale")
        .message("spec.rollout.canary.dynamicStableScale cannot be used with spec.autoscaling: the operator sets the stable side's replica count while a canary runs"),
    validation = Rule::new("!has(self.spec.autoscaling) || !has(self.spec.rollout) || !has(self.spec.rollout.canary) || !has(self.spec.rollout.canary.warmRollbackWindow)")
        .message("spec.rollout.canary.warmRollbackWindow cannot be used with spec.autoscaling: the promotion recreates the stable Deployment, whose count the HPA owns")
)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentSpec {
    /// Which model, and which version of it, to serve.
    pub model: ModelSpec,

    /// The model server: its container image and how to run it.
    pub server: ServerSpec,

    /// Extra labels and annotations for the model pods (sidecar injection,
    /// scrape annotations, test behaviour labels). They may not override the
    /// labels the operator sets itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<PodMetadata>,

    /// Number of model server pods. Ignored while `autoscaling` runs the
    /// built-in HorizontalPodAutoscaler (mode `HPA`), which owns the count
    /// then. With `autoscaling.mode: External` an outside scaler (KEDA, your
    /// own HPA) writes it through the scale subresource. 0 is a normal
    /// state: nothing serves, nothing rolls back, a new version rolls out
    /// once the model is scaled up again.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub replicas: i32,

    /// Scale the model server: with a HorizontalPodAutoscaler the operator
    /// keeps (mode `HPA`, on CPU or on any autoscaling/v2 metric such as a
    /// request queue), or by an outside scaler writing `replicas` (mode
    /// `External`, e.g. a KEDA ScaledObject). Remove it to go back to a fixed
    /// `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Keep a PodDisruptionBudget over the model's pods, so that node drains
    /// and cluster upgrades leave enough of them serving. Not part of a
    /// revision: changing it rolls nothing out. Remove it to delete the
    /// budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudgetSpec>,

    /// The Service in front of the model server pods.
    #[serde(default)]
    pub service: ServiceSpec,

    /// How a new version replaces the running one.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// How many old revisions to keep for history and rollback.
    #[serde(default = "default_revision_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub revision_history_limit: i32,

    /// Hold the running revision: spec changes wait until this is false again.
    #[serde(default)]
    pub paused: bool,

    /// Where alerts go besides Kubernetes Events: rollbacks, failed rollouts,
    /// stopped analyses and post-promotion breaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsSpec>,
}

impl ModelDeploymentSpec {
    /// The built-in HorizontalPodAutoscaler owns the replica count.
    pub fn hpa_scales(&self) -> bool {
        self.autoscaling
            .as_ref()
            .is_some_and(AutoscalingSpec::builtin)
    }
}

fn default_replicas() -> i32 {
    1
}

fn default_revision_history_limit() -> i32 {
    10
}

/// The model to serve. The server container sees it as the environment
/// variables MODEL_NAME, MODEL_VERSION, (when set) MODEL_URI and, with
/// `storage`, MODEL_PATH.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.storage) || (has(self.uri) && self.uri.matches('^(pvc|s3|gs|hf|https)://.+'))").message("model.storage needs model.uri with one of the schemes pvc://, s3://, gs://, hf:// or https://"),
    validation = Rule::new("!has(self.storage) || !has(self.uri) || !self.uri.startsWith('pvc://') || self.uri.matches('^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/.*)?$')").message("model.uri pvc://<claim>/<path> needs a claim name of lowercase letters, digits, '-' or '.'"),
    validation = Rule::new("!has(self.storage) || !has(self.uri) || !self.uri.startsWith('pvc://') || (!has(self.storage.cacheClaimName) && !has(self.storage.sizeLimit) && !has(self.storage.credentialsSecretName))").message("model.uri pvc:// is mounted, not downloaded: model.storage.sizeLimit, cacheClaimName and credentialsSecretName do not apply"),
)]
pub struct ModelSpec {
    /// Model name; defaults to the ModelDeployment's name. It becomes the pods'
    /// `app.kubernetes.io/name` label, so it must be a valid label value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')").message("model.name must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit (it becomes a pod label)"))]
    pub name: Option<String>,

    /// Model version, e.g. "2.1.0". Changing it rolls out a new revision. It
    /// becomes the pods' `app.kubernetes.io/version` label.
    #[schemars(length(max = 63))]
    #[x_kube(
        validation = Rule::new("size(self) > 0").message("model.version must not be empty"),
        validation = Rule::new("size(self) == 0 || self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')").message("model.version must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit (it becomes a pod label)")
    )]
    pub version: String,

    /// Where the server loads the model from, e.g. `s3://models/fraud/2.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub uri: Option<String>,

    /// Model format (e.g. sklearn, onnx, pytorch). Informational only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub format: Option<String>,

    /// Have the operator put the model at `MODEL_PATH` before the server
    /// starts: `pvc://<claim>/<path>` is mounted read-only (no download);
    /// `s3://`, `gs://`, `hf://` and `https://` are downloaded by an init
    /// container (the platform's storage initializer, chart value
    /// `modelFetch.image`) into a volume. Without it the server reads
    /// MODEL_URI itself, as before (docs/serving.md, "The model's weights").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<ModelStorage>,
}

/// Where the model's files go and how they are fetched.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.cacheClaimName) || !has(self.sizeLimit)").message("model.storage takes sizeLimit (an emptyDir) or cacheClaimName (a PVC), not both"),
)]
pub struct ModelStorage {
    /// Where the model container finds the model (`MODEL_PATH`, plus the
    /// path of a `pvc://` URI); `/mnt/models` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && self != '/' && !self.startsWith('/dev/shm')").message("model.storage.mountPath must be an absolute directory other than / and /dev/shm"))]
    pub mount_path: Option<String>,

    /// Size limit of the emptyDir a download goes to (e.g. `40Gi`); the
    /// node's ephemeral storage when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::server_spec::quantity_schema")]
    pub size_limit: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,

    /// A PersistentVolumeClaim the download goes to instead of an emptyDir,
    /// kept across pod restarts (ReadWriteMany to share it among replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cache_claim_name: Option<String>,

    /// A Secret in the namespace whose keys become the download's
    /// environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for S3; `HF_TOKEN` for
    /// Hugging Face. Without it the download uses the pod's service account
    /// (IRSA, Workload Identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credentials_secret_name: Option<String>,
}

/// Labels and annotations added to the model pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    /// Extra pod labels. The operator's own labels may not be overridden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new("!self.exists(k, k in ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/component', 'app.kubernetes.io/managed-by', 'mlops.dev/revision', 'mlops.dev/track', 'mlops.dev/owner-uid'])").message("podMetadata.labels may not set the operator's own labels: app.kubernetes.io/name, app.kubernetes.io/instance, app.kubernetes.io/version, app.kubernetes.io/component, app.kubernetes.io/managed-by, mlops.dev/revision, mlops.dev/track, mlops.dev/owner-uid"))]
    pub labels: Option<BTreeMap<String, String>>,

    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The Service in front of the model server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Port the Service exposes; traffic goes to `server.port` on the pods.
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            port: default_service_port(),
            type_: ServiceType::default(),
        }
    }
}

fn default_service_port() -> i32 {
    80
}

/// How the Service is exposed.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

/// Rolling update settings, passed to the Deployment's strategy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.strategy) || self.strategy != 'Canary' || has(self.canary)").message("rollout.strategy Canary needs rollout.canary with at least one step"))]
#[x_kube(validation = Rule::new("!has(self.podReplacement) || self.podReplacement != 'ReplaceInPlace' || !has(self.strategy) || self.strategy != 'Canary'").message("rollout.podReplacement ReplaceInPlace needs strategy RollingUpdate: a canary's pods run beside the stable ones, on capacity of their own"))]
#[x_kube(validation = Rule::new("!((type(self.maxSurge) == int ? self.maxSurge == 0 : self.maxSurge.matches('^0+%$')) && (type(self.maxUnavailable) == int ? self.maxUnavailable == 0 : self.maxUnavailable.matches('^0+%$')))").message("rollout.maxSurge and rollout.maxUnavailable must not both be 0: the rollout could never make progress"))]
pub struct RolloutSpec {
    /// Pods created above the desired count during an update (number or
    /// percentage); 0 whatever is set here with podReplacement
    /// ReplaceInPlace.
    #[serde(default = "default_max_surge")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 && self <= 2147483647 : self.matches('^[0-9]{1,9}%$')").message("rollout.maxSurge must be a non-negative number or a percentage such as '25%' (at most 2147483647 and 999999999%)"))]
    pub max_surge: IntOrString,

    /// Pods that may be unavailable during an update (number or
    /// percentage); at least 1 with podReplacement ReplaceInPlace.
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 && self <= 2147483647 : self.matches('^(100|[1-9]?[0-9])%$')").message("rollout.maxUnavailable must be a non-negative number (at most 2147483647) or a percentage from 0% to 100%"))]
    pub max_unavailable: IntOrString,

    /// Seconds a rollout may make no progress before it counts as failed.
    /// Crash-looping and image-pull failures are caught as soon as they show,
    /// without waiting for this deadline.
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub progress_deadline_seconds: i32,

    /// Seconds new pods may stay unschedulable, with the rollout unable to
    /// make any other progress (no pod terminating, every other pod
    /// available), before the revision fails with reason
    /// InsufficientCapacity (e.g. `Insufficient nvidia.com/gpu`: the old
    /// pods hold the GPUs the surge pod needs) or NoMatchingNode, and is
    /// rolled back like a crash loop. Where a node autoscaler adds nodes for
    /// pending pods, set it to the time a node takes to join.
    #[serde(default = "default_capacity_grace")]
    #[schemars(range(min = 0, max = 86400))]
    pub capacity_grace_seconds: i32,

    /// Whether new pods start beside the old ones (Surge, the default) or
    /// replace them (ReplaceInPlace), for a new revision and a rollback
    /// alike. ReplaceInPlace is for models that hold all the GPUs they
    /// can get: it never asks for more than the model already holds.
    #[serde(default)]
    pub pod_replacement: PodReplacement,

    /// Put the last stable revision back when a new one fails. The spec is
    /// never changed: status, history and events say what happened.
    #[serde(default = "default_true")]
    pub auto_rollback: bool,

    /// Metric gates on Prometheus a new revision must pass before it is
    /// Stable, and the guard on the Stable revision after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,

    /// RollingUpdate (the default) or Canary (`canary` says how).
    #[serde(default)]
    pub strategy: RolloutStrategy,

    /// The canary's steps and traffic routing; used when `strategy` is
    /// Canary. A first rollout (nothing Stable yet) has nothing to compare
    /// with and rolls out at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
}

/// How a rollout makes room for the new revision's pods.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum PodReplacement {
    /// New pods start beside the old ones (up to `maxSurge` more than
    /// `replicas`), and an old pod goes only once a new one is available.
    /// Needs room for the surge pods; without it the revision fails after
    /// `capacityGraceSeconds` (InsufficientCapacity) and is rolled back.
    #[default]
    Surge,
    /// An old pod goes before its replacement is created: `maxSurge` is 0
    /// and `maxUnavailable` at least 1, so the model never asks for more
    /// GPUs (or CPU, memory) than it already holds, and at least `replicas`
    /// − `maxUnavailable` pods serve throughout (none while a 1-replica
    /// model is replaced). The model loads once per replaced pod. A new
    /// pod that still finds no node (someone else took the room) fails the
    /// revision after `capacityGraceSeconds` as with Surge.
    ReplaceInPlace,
}

fn default_true() -> bool {
    true
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            max_surge: default_max_surge(),
            max_unavailable: default_max_unavailable(),
            progress_deadline_seconds: default_progress_deadline(),
            capacity_grace_seconds: default_capacity_grace(),
            pod_replacement: PodReplacement::Surge,
            auto_rollback: true,
            analysis: None,
            strategy: RolloutStrategy::RollingUpdate,
            canary: None,
        }
    }
}

fn default_max_surge() -> IntOrString {
    IntOrString::String("25%".into())
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(0)
}

fn default_progress_deadline() -> i32 {
    300
}

/// Longer than the scheduler's retry backoff (10 s at most by default)
/// after room was freed, short enough to beat the progress deadline by
/// minutes.
fn default_capacity_grace() -> i32 {
    10
}
