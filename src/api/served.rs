//! The part of a spec that decides what runs in the model pods.

use serde::{Deserialize, Serialize};

use super::{ModelDeployment, ModelSpec, PodMetadata, ServerSpec};

/// What runs in the pods: the model, the server and the pods' extra metadata.
///
/// A change here is a new revision; scaling, Service and rollout settings are
/// not. Revisions store this as their snapshot, so a rollback restores exactly
/// what ran.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServedVersion {
    /// The model, with its name resolved.
    pub model: ModelSpec,
    /// The model server container.
    pub server: ServerSpec,
    /// Extra pod labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<PodMetadata>,
}

impl ServedVersion {
    /// The version the spec asks for. The model name defaults to the
    /// ModelDeployment's name, resolved here so a rename of the object can
    /// never silently change a stored revision.
    pub fn requested(md: &ModelDeployment) -> Self {
        let mut model = md.spec.model.clone();
        if model.name.is_none() {
            model.name = md.metadata.name.clone();
        }
        Self {
            model,
            server: md.spec.server.clone(),
            pod_metadata: md.spec.pod_metadata.clone(),
        }
    }

    /// The resolved model name.
    pub fn model_name(&self) -> &str {
        self.model.name.as_deref().unwrap_or_default()
    }
}
