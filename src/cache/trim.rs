//! What the caches keep of an object's metadata, whatever others write on
//! it: the operator's own labels and annotations, and of an object no
//! ModelDeployment controls only what identifies it.
//!
//! Anyone who may edit objects in a namespace can add labels (no total
//! limit) and up to 256 KiB of annotations to them, or create objects that
//! merely carry `app.kubernetes.io/managed-by=model-operator` and so enter
//! the label-scoped watches. Kept whole, that would grow the shared
//! operator's memory with what one team writes (issue 24). The operator
//! reads none of it: its drift check compares only the labels and the
//! applied-hash annotation it sets itself.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Label prefixes the operator sets and reads, and the label the
/// Deployment controller gives pods (`rollout::health` matches it).
const OWN_LABELS: [&str; 3] = ["app.kubernetes.io/", "mlops.dev/", "pod-template-hash"];
/// Annotation prefix the operator sets and reads.
const OWN_ANNOTATIONS: &str = "mlops.dev/";
/// The longest annotation value kept as is: the operator's own are hashes,
/// revision numbers, timestamps and short tokens. A longer one is kept as
/// its hash, so that equal values still compare equal (the retry token).
pub const ANNOTATION_VALUE_LIMIT: usize = 1024;

/// Drops managed fields and every label and annotation that is not the
/// operator's own; an annotation value too long to be ours is kept as its
/// hash.
pub fn metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|key, _| OWN_LABELS.iter().any(|p| key.starts_with(p)));
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(OWN_ANNOTATIONS));
        for value in annotations.values_mut() {
            if value.len() > ANNOTATION_VALUE_LIMIT {
                *value = format!("sha256:{}", crate::digest::sha256_hex(value.as_bytes(), 16));
            }
        }
    }
}

/// The object carries a controller owner reference to a ModelDeployment:
/// one of the operator's children (which one, `resources::owned_by` says).
pub fn controlled_by_a_model(meta: &ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.kind == "ModelDeployment"
            && r.api_version.starts_with("mlops.dev/")
    })
}

/// Of an object no ModelDeployment controls, what identifies it: name,
/// namespace, uid, its controller reference and the instance label (so a
/// name conflict can still be seen and reported). Returns whether the
/// object is a child, whose spec and status the caller keeps.
pub fn identity_unless_child(meta: &mut ObjectMeta) -> bool {
    metadata(meta);
    if controlled_by_a_model(meta) {
        return true;
    }
    let kept = std::mem::take(meta);
    *meta = ObjectMeta {
        name: kept.name,
        namespace: kept.namespace,
        uid: kept.uid,
        resource_version: kept.resource_version,
        owner_references: kept.owner_references.map(|refs| {
            refs.into_iter()
                .filter(|r| r.controller == Some(true))
                .collect()
        }),
        labels: kept.labels.map(|labels| {
            labels
                .into_iter()
                .filter(|(k, _)| k == crate::resources::labels::INSTANCE)
                .collect()
        }),
        ..ObjectMeta::default()
    };
    false
}

/// An HPA no ModelDeployment controls: its identity only.
pub fn keep_hpa(hpa: &mut HorizontalPodAutoscaler) {
    if !identity_unless_child(&mut hpa.metadata) {
        hpa.spec = Default::default();
        hpa.status = None;
    }
}

/// A PodDisruptionBudget: of a child, metadata and spec (what the drift
/// check compares); of another, its identity only. Never the status: the
/// disruption controller rewrites it whenever a selected pod's readiness
/// changes, and the operator reads none of it.
pub fn keep_pdb(pdb: &mut PodDisruptionBudget) {
    if !identity_unless_child(&mut pdb.metadata) {
        pdb.spec = None;
    }
    pdb.status = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(value: serde_json::Value) -> ObjectMeta {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_our_labels_and_annotations_stay() {
        let mut m = meta(json!({
            "name": "fraud",
            "labels": {"app.kubernetes.io/instance": "fraud", "mlops.dev/revision": "3", "team": "a",
                       "pod-template-hash": "5d8f"},
            "annotations": {"mlops.dev/applied-hash": "abc", "note": "x",
                            "mlops.dev/retry": "y".repeat(ANNOTATION_VALUE_LIMIT + 1)},
            "managedFields": [{"manager": "kubectl"}],
        }));
        metadata(&mut m);
        assert_eq!(
            m.labels.unwrap().keys().collect::<Vec<_>>(),
            [
                "app.kubernetes.io/instance",
                "mlops.dev/revision",
                "pod-template-hash"
            ]
        );
        let annotations = m.annotations.unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["mlops.dev/applied-hash", "mlops.dev/retry"]
        );
        assert!(annotations["mlops.dev/retry"].starts_with("sha256:"));
        assert!(annotations["mlops.dev/retry"].len() < 64);
        assert!(m.managed_fields.is_none());
    }

    #[test]
    fn a_foreign_object_keeps_its_identity_only() {
        let owner = |kind: &str, api: &str, controller: bool| json!({"kind": kind, "apiVersion": api, "name": "o", "uid": "u", "controller": controller});
        let foreign = json!({
            "name": "fraud", "namespace": "ml", "uid": "1", "finalizers": ["x"],
            "labels": {"app.kubernetes.io/instance": "fraud", "app.kubernetes.io/managed-by": "model-operator"},
            "annotations": {"mlops.dev/applied-hash": "abc"},
            "ownerReferences": [owner("Deployment", "apps/v1", true), owner("ModelDeployment", "mlops.dev/v1alpha1", false)],
        });
        let mut m = meta(foreign.clone());
        assert!(!identity_unless_child(&mut m));
        assert_eq!(m.name.as_deref(), Some("fraud"));
        assert_eq!(m.uid.as_deref(), Some("1"));
        assert_eq!(m.owner_references.as_ref().unwrap().len(), 1);
        assert_eq!(m.labels.unwrap().len(), 1);
        assert!(m.annotations.is_none() && m.finalizers.is_none());

        let mut child = foreign;
        child["ownerReferences"] = json!([owner("ModelDeployment", "mlops.dev/v1alpha1", true)]);
        let mut m = meta(child);
        assert!(identity_unless_child(&mut m));
        assert_eq!(m.labels.unwrap().len(), 2);
        assert!(m.annotations.is_some());
    }

    #[test]
    fn a_budget_keeps_no_status_and_a_foreign_one_no_spec() {
        let pdb = |controller: bool| -> PodDisruptionBudget {
            serde_json::from_value(json!({
                "metadata": {"name": "fraud", "ownerReferences": [{"kind": "ModelDeployment",
                    "apiVersion": "mlops.dev/v1alpha1", "name": "fraud", "uid": "u", "controller": controller}]},
                "spec": {"minAvailable": 1},
                "status": {"currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1, "expectedPods": 2},
            }))
            .unwrap()
        };
        let mut ours = pdb(true);
        keep_pdb(&mut ours);
        assert!(ours.spec.is_some() && ours.status.is_none());
        let mut theirs = pdb(false);
        keep_pdb(&mut theirs);
        assert!(theirs.spec.is_none() && theirs.status.is_none());
        assert_eq!(theirs.metadata.name.as_deref(), Some("fraud"));
    }
}
