//! Who owns a child: the one rule, by controller owner reference, that
//! decides whether the operator may patch, adopt or delete an object. An
//! object that merely carries our labels is someone else's.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::api::ModelDeployment;

/// The child carries this ModelDeployment's controller owner reference.
pub fn owned_by<K: Resource>(child: &K, md: &ModelDeployment) -> bool {
    let uid = md.meta().uid.as_deref();
    child
        .owner_references()
        .iter()
        .any(|r| Some(r.uid.as_str()) == uid && r.controller == Some(true))
}

/// Both carry a controller owner reference to the same uid.
pub fn owned_by_same_controller<K: Resource, L: Resource>(ours: &K, theirs: &L) -> bool {
    let controller_uid = |refs: &[OwnerReference]| {
        refs.iter()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.clone())
    };
    match controller_uid(ours.owner_references()) {
        Some(uid) => controller_uid(theirs.owner_references()) == Some(uid),
        None => false,
    }
}
