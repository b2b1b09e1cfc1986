//! The PodDisruptionBudget a ModelDeployment may ask for. Not part of what
//! runs in the pods (`ServedVersion`): changing it is no new revision.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How many of the model's pods voluntary disruptions (node drains, cluster
/// upgrades, evictions) must leave alone. The operator keeps a
/// PodDisruptionBudget (policy/v1) with the ModelDeployment's name over
/// every pod of this ModelDeployment, stable and canary alike. Exactly one of
/// `minAvailable` and `maxUnavailable`. Remove it to delete the budget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.minAvailable) != has(self.maxUnavailable)").message("disruptionBudget takes exactly one of minAvailable or maxUnavailable"))]
pub struct DisruptionBudgetSpec {
    /// Pods that must stay available through a voluntary disruption: a
    /// number (e.g. 1) or a percentage of the model's pods (e.g. "50%").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 && self <= 2147483647 : self.matches('^(100|[1-9]?[0-9])%$')").message("disruptionBudget.minAvailable must be a non-negative number (at most 2147483647) or a percentage from 0% to 100%"))]
    pub min_available: Option<IntOrString>,

    /// Pods that may be unavailable at once through a voluntary disruption:
    /// a number (e.g. 1) or a percentage of the model's pods (e.g. "25%").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 && self <= 2147483647 : self.matches('^(100|[1-9]?[0-9])%$')").message("disruptionBudget.maxUnavailable must be a non-negative number (at most 2147483647) or a percentage from 0% to 100%"))]
    pub max_unavailable: Option<IntOrString>,
}
