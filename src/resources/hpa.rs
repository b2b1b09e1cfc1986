use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use kube::ResourceExt;

use super::child_meta;
use crate::api::{DEFAULT_CPU_UTILIZATION, ModelDeployment};

/// The autoscaler, when the spec asks for the built-in one: on the stable
/// Deployment, with the spec's metrics, or CPU utilisation when it names
/// none.
pub fn hpa(md: &ModelDeployment, model_name: &str) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = md.spec.autoscaling.as_ref().filter(|a| a.builtin())?;
    let metrics = autoscaling.metrics.clone().unwrap_or_else(|| {
        vec![cpu_utilization(
            autoscaling
                .target_cpu_utilization_percentage
                .unwrap_or(DEFAULT_CPU_UTILIZATION),
        )]
    });
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(md, model_name),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: md.name_any(),
            },
            min_replicas: Some(autoscaling.min_replicas.unwrap_or(1)),
            // The schema requires it with the built-in HPA; an object
            // stored without it still gets a valid HPA.
            max_replicas: autoscaling
                .max_replicas
                .unwrap_or_else(|| autoscaling.min_replicas.unwrap_or(1)),
            metrics: Some(metrics),
            behavior: autoscaling.behavior.clone(),
        },
        status: None,
    })
}

fn cpu_utilization(percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".to_string(),
        resource: Some(ResourceMetricSource {
            name: "cpu".to_string(),
            target: MetricTarget {
                type_: "Utilization".to_string(),
                average_utilization: Some(percent),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}
