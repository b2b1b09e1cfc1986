//! The `ModelDeployment` custom resource (`mlops.dev/v1alpha1`).

mod analysis_spec;
mod analysis_status;
mod autoscaling_spec;
pub mod bounds;
mod canary_rollout;
mod disruption_budget;
mod explain;
mod model_spec;
mod model_status;
mod notify_spec;
mod served;
mod server_spec;
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
pub use disruption_budget::DisruptionBudgetSpec;
pub use served::ServedVersion;

pub use autoscaling_spec::{AutoscalingMode, AutoscalingSpec, DEFAULT_CPU_UTILIZATION};
pub use model_spec::{
    ModelDeployment, ModelDeploymentSpec, ModelSpec, ModelStorage, PodMetadata, PodReplacement,
    RolloutSpec, ServiceSpec, ServiceType,
};
pub use model_status::{HistoryEntry, ModelDeploymentStatus, Outcome, Phase, UnschedulableStatus};
pub use notify_spec::{NotificationKind, WebhookFormat};
pub use server_spec::{
    DnsPolicy, EMBEDDED_KUBERNETES_TYPES, MAIN_PORT, MODEL_CONTAINER, Protocol, PullPolicy,
    RESERVED_VOLUME_PREFIX, ServerPort, ServerSpec, VOLUME_SOURCES,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRD, every node of its spec bounded (`bounds`). Use this, never
/// `ModelDeployment::crd()`, which lacks the bounds.
pub fn crd() -> CustomResourceDefinition {
    let crd = ModelDeployment::crd();
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(versions) = value
        .pointer_mut("/spec/versions")
        .and_then(serde_json::Value::as_array_mut)
    {
        for version in versions {
            if let Some(spec) = version.pointer_mut("/schema/openAPIV3Schema/properties/spec") {
                bounds::apply(spec);
                explain::shorten_embedded(spec);
            }
        }
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// The spec's schema in the CRD, bounded.
pub fn spec_schema() -> serde_json::Value {
    serde_json::to_value(crd())
        .ok()
        .and_then(|v| {
            v.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
                .cloned()
        })
        .unwrap_or_default()
}

/// The CRD as YAML, exactly as `crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}
