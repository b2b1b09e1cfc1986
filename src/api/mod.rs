//! The `ModelDeployment` custom resource (`mlops.dev/v1alpha1`).

mod analysis_spec;
mod analysis_status;
mod canary_rollout;
mod model_spec;
mod model_status;
mod served;
mod tolerant;

pub use analysis_spec::{
    AlertmanagerSpec, AlertsSpec, AnalysisSpec, BreachAction, ComparisonSpec, ComparisonTest,
    MetricGate, OnNoData, PostPromotionSpec, PrometheusSpec, SecretKeyRef, WebhookSpec, WorseWhen,
};
pub use analysis_status::{
    AlertChannel, AlertNotification, AlertState, AnalysisPhase, AnalysisStatus, ComparisonEvidence,
    Finding, FiringAlert, MetricCheck, Verdict,
};
pub use canary_rollout::{
    CanarySpec, CanaryStatus, CanaryStep, GatewayApiRouting, PauseStep, RolloutStrategy,
    TrafficRouting,
};
pub use served::ServedVersion;

pub use model_spec::{
    AutoscalingSpec, ModelDeployment, ModelDeploymentSpec, ModelSpec, PodMetadata, RolloutSpec,
    ServerSpec, ServiceSpec, ServiceType,
};
pub use model_status::{HistoryEntry, ModelDeploymentStatus, Outcome, Phase};

use kube::CustomResourceExt;

/// The CRD as YAML, exactly as `crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&ModelDeployment::crd())
}
