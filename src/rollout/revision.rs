//! Revisions: numbered snapshots of what runs in the pods, stored as
//! ControllerRevision objects owned by the ModelDeployment so a restarted
//! operator (or a second one) knows every version that ran.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::{Resource, ResourceExt};
use serde::Deserialize;

use crate::api::{ModelDeployment, ServedVersion};
use crate::resources::labels;

use crate::resources::labels::SERVED_HASH;

/// A revision read back from its ControllerRevision.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub hash: String,
    /// The ControllerRevision's uid: a prune deletes that object only.
    pub uid: Option<String>,
    /// Its snapshot: `None` until a pass that needs it reads it (the cache
    /// keeps metadata only, `reconcile::revisions::read_snapshots`).
    pub served: Option<ServedVersion>,
}

/// A revision known from its metadata alone: its number (label) and the
/// hash of what it serves (annotation). `None` for an object that lacks
/// either or whose name does not match its number.
pub fn identify(meta: &ObjectMeta, md_name: &str) -> Option<Revision> {
    let number: i64 = meta.labels.as_ref()?.get(labels::REVISION)?.parse().ok()?;
    let hash = meta.annotations.as_ref()?.get(SERVED_HASH)?.clone();
    (meta.name.as_deref() == Some(name(md_name, number).as_str())).then_some(Revision {
        number,
        hash,
        uid: meta.uid.clone(),
        served: None,
    })
}

/// Identity of a served version: a hash of its canonical JSON form.
pub fn served_hash(served: &ServedVersion) -> String {
    // Serializing plain data (strings, maps, k8s-openapi types) cannot fail;
    // an empty input would still hash deterministically.
    let bytes = serde_json::to_vec(served).unwrap_or_default();
    crate::digest::sha256_hex(&bytes, 10)
}

/// Name of revision `number` of a ModelDeployment. Numbered names make two
/// operators racing to create "the next revision" collide instead of
/// creating two revisions with the same number.
pub fn name(md_name: &str, number: i64) -> String {
    format!("{md_name}-r{number}")
}

/// The number the spec's served version has: an existing revision with the
/// same hash, or the next number.
pub fn resolve(existing: &[Revision], served: &ServedVersion, highest_known: i64) -> (i64, bool) {
    let hash = served_hash(served);
    match existing.iter().find(|r| r.hash == hash) {
        Some(r) => (r.number, false),
        None => {
            let highest = existing
                .iter()
                .map(|r| r.number)
                .max()
                .unwrap_or(0)
                .max(highest_known);
            (highest + 1, true)
        }
    }
}

pub fn build(md: &ModelDeployment, number: i64, served: &ServedVersion) -> ControllerRevision {
    let md_name = md.name_any();
    let mut labels = labels::common(&md_name, served.model_name());
    labels.insert(labels::REVISION.to_string(), number.to_string());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name(&md_name, number)),
            namespace: md.namespace(),
            labels: Some(labels),
            annotations: Some([(SERVED_HASH.to_string(), served_hash(served))].into()),
            owner_references: md.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: serde_json::to_value(served).ok().map(RawExtension),
        revision: number,
    }
}

/// `None` for a ControllerRevision that is not one of ours or is damaged
/// (its data does not hash to its annotation); such an object is ignored
/// rather than trusted.
pub fn parse(cr: &ControllerRevision) -> Option<Revision> {
    let hash = cr.annotations().get(SERVED_HASH)?.clone();
    let served = ServedVersion::deserialize(&cr.data.as_ref()?.0).ok()?;
    (served_hash(&served) == hash).then_some(Revision {
        number: cr.revision,
        hash,
        uid: cr.metadata.uid.clone(),
        served: Some(served),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn the_metadata_alone_identifies_a_revision() {
        let m = md("2.0", "srv:2");
        let served = ServedVersion::requested(&m);
        let cr = build(&m, 4, &served);
        let known = identify(&cr.metadata, "fraud").unwrap();
        assert_eq!((known.number, known.served), (4, None));
        assert_eq!(known.hash, served_hash(&served));
        assert_eq!(known.hash, parse(&cr).unwrap().hash);
        assert!(
            identify(&cr.metadata, "other").is_none(),
            "another model's name"
        );
        let mut renumbered = cr.metadata.clone();
        renumbered
            .labels
            .as_mut()
            .unwrap()
            .insert(labels::REVISION.into(), "5".into());
        assert!(
            identify(&renumbered, "fraud").is_none(),
            "label and name disagree"
        );
        let mut unhashed = cr.metadata;
        unhashed.annotations = None;
        assert!(identify(&unhashed, "fraud").is_none());
    }

    fn md(version: &str, image: &str) -> ModelDeployment {
        fixtures::md()
            .uid("u")
            .version(version)
            .image(image)
            .replicas(3)
            .build()
    }

    #[test]
    fn round_trip_and_identity() {
        let m = md("1.0", "srv:1");
        let served = ServedVersion::requested(&m);
        let cr = build(&m, 4, &served);
        assert_eq!(cr.metadata.name.as_deref(), Some("fraud-r4"));
        assert_eq!(cr.labels()[labels::REVISION], "4");
        let parsed = parse(&cr).unwrap();
        assert_eq!((parsed.number, parsed.served), (4, Some(served)));
    }

    #[test]
    fn scaling_is_not_a_new_revision_but_a_model_change_is() {
        let a = ServedVersion::requested(&md("1.0", "srv:1"));
        let mut scaled = md("1.0", "srv:1");
        scaled.spec.replicas = 9;
        scaled.spec.service.port = 9999;
        assert_eq!(
            served_hash(&a),
            served_hash(&ServedVersion::requested(&scaled))
        );
        assert_ne!(
            served_hash(&a),
            served_hash(&ServedVersion::requested(&md("1.1", "srv:1")))
        );
        assert_ne!(
            served_hash(&a),
            served_hash(&ServedVersion::requested(&md("1.0", "srv:2")))
        );
    }

    #[test]
    fn resolve_reuses_known_versions_and_numbers_new_ones() {
        let v1 = ServedVersion::requested(&md("1.0", "srv:1"));
        let v2 = ServedVersion::requested(&md("2.0", "srv:1"));
        let existing = vec![Revision {
            number: 1,
            hash: served_hash(&v1),
            uid: None,
            served: None,
        }];
        assert_eq!(resolve(&existing, &v1, 1), (1, false));
        assert_eq!(resolve(&existing, &v2, 1), (2, true));
        // Numbers never go back, even when old revisions were pruned.
        assert_eq!(resolve(&existing, &v2, 7), (8, true));
        assert_eq!(resolve(&[], &v2, 0), (1, true));
    }

    #[test]
    fn a_tampered_revision_is_ignored() {
        let m = md("1.0", "srv:1");
        let mut cr = build(&m, 1, &ServedVersion::requested(&m));
        cr.annotations_mut()
            .insert(SERVED_HASH.into(), "0000".into());
        assert!(parse(&cr).is_none());
    }
}
