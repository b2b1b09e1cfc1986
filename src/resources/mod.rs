//! Pure builders of the child objects. None of them sees a client: they are
//! functions of the ModelDeployment (and the version to serve) only.

mod deployment;
mod hpa;
pub mod labels;
mod owner;
mod pdb;
mod pod;
pub mod route;
mod security;
mod service;
pub mod storage;

pub use crate::api::{MAIN_PORT as PORT_NAME, MODEL_CONTAINER as CONTAINER_NAME};
pub use deployment::{
    canary_deployment, canary_name, deployment, revision_of, selected_revision, warm_deployment,
    warm_name,
};
pub use hpa::hpa;
pub use owner::{owned_by, owned_by_same_controller};
pub use pdb::pdb;
pub use pod::SHM_VOLUME;
pub use service::{service, service_url};
pub use storage::Platform;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::ModelDeployment;

/// Metadata shared by every child: same name and namespace as the owner,
/// the operator's labels, and a controller owner reference so that deleting
/// the ModelDeployment garbage-collects its children.
fn child_meta(md: &ModelDeployment, model_name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(md.name_any()),
        namespace: md.namespace(),
        labels: Some(labels::common(&md.name_any(), model_name)),
        owner_references: owner_reference(md).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// `None` only for an object that was never stored (no uid), which the
/// controller never hands to a builder.
fn owner_reference(md: &ModelDeployment) -> Option<OwnerReference> {
    md.controller_owner_ref(&())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pod_tests;

#[cfg(test)]
mod proptests;
