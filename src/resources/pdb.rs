use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::{child_meta, labels};
use crate::api::ModelDeployment;

/// The disruption budget, when the spec asks for one. It selects what the
/// Service selects: every pod of this ModelDeployment (stable and canary,
/// any revision) and, through the owner-uid label, no other model's pods
/// nor a pod made by hand from a copy of its labels.
pub fn pdb(md: &ModelDeployment, model_name: &str) -> Option<PodDisruptionBudget> {
    let budget = md.spec.disruption_budget.as_ref()?;
    Some(PodDisruptionBudget {
        metadata: child_meta(md, model_name),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: budget.min_available.clone(),
            max_unavailable: budget.max_unavailable.clone(),
            selector: Some(LabelSelector {
                match_labels: Some(labels::service_selector(
                    &md.name_any(),
                    md.metadata.uid.as_deref(),
                )),
                match_expressions: None,
            }),
            unhealthy_pod_eviction_policy: None,
        }),
        status: None,
    })
}
