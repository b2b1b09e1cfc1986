//! Does a child need applying? Decided from the cache, so that a converged
//! object costs no API request.
//!
//! Two checks together: a hash of the desired object, stored as an annotation
//! at apply time, catches every spec change (fields removed included); a
//! subset comparison of desired against observed catches hand edits of the
//! fields the operator owns. Fields others own or the API server defaulted are
//! not the operator's business and never count as drift.

use serde::Serialize;
use serde_json::Value;

use crate::resources::labels::APPLIED_HASH;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The child does not exist.
    Create,
    /// The spec asks for something else than was last applied.
    Update,
    /// Someone changed a field the operator owns.
    RestoreDrift,
    /// Converged.
    Nothing,
}

/// Hash of an object's serialized form (which is deterministic: struct field
/// order and BTreeMap keys).
pub fn hash_of<T: Serialize>(object: &T) -> Result<String, serde_json::Error> {
    crate::digest::json_sha256_hex(object, 8)
}

/// `desired` must already carry its APPLIED_HASH annotation.
pub fn need<T: Serialize>(
    desired: &Value,
    observed: Option<&T>,
) -> Result<Need, serde_json::Error> {
    let Some(observed) = observed else {
        return Ok(Need::Create);
    };
    let observed = serde_json::to_value(observed)?;
    let hash = |v: &Value| {
        v.pointer(&format!(
            "/metadata/annotations/{}",
            APPLIED_HASH.replace('/', "~1")
        ))
        .cloned()
    };
    if hash(desired) != hash(&observed) {
        return Ok(Need::Update);
    }
    Ok(if is_subset(desired, &observed, false) {
        Need::Nothing
    } else {
        Need::RestoreDrift
    })
}

/// Every value set in `desired` is present and equal in `observed`.
/// `quantities`: the values below are resource quantities (inside the
/// `limits` or `requests` of a container).
fn is_subset(desired: &Value, observed: &Value, quantities: bool) -> bool {
    match (desired, observed) {
        (Value::Null, _) => true,
        (Value::Object(d), Value::Object(o)) => d.iter().all(|(k, dv)| match o.get(k) {
            Some(ov) => is_subset(dv, ov, quantities || k == "limits" || k == "requests"),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(o)) => {
            d.len() == o.len() && d.iter().zip(o).all(|(dv, ov)| is_subset(dv, ov, false))
        }
        (Value::Number(d), Value::Number(o)) => d.as_f64() == o.as_f64(),
        (Value::String(d), o) if quantities => match o {
            Value::String(o) => d == o || same_quantity(d, o),
            Value::Number(o) => o
                .as_f64()
                .is_some_and(|o| crate::quantity::parse(d) == Some(o)),
            _ => false,
        },
        (d, Value::Null) => is_empty(d),
        (d, o) => d == o,
    }
}

/// The API server drops empty lists and maps: they are not drift.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn same_quantity(a: &str, b: &str) -> bool {
    match (crate::quantity::parse(a), crate::quantity::parse(b)) {
        (Some(a), Some(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_hash(mut v: Value, hash: &str) -> Value {
        v["metadata"]["annotations"][APPLIED_HASH] = json!(hash);
        v
    }

    #[test]
    fn need_table() {
        let desired = with_hash(
            json!({"metadata": {"name": "m"}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "a:1", "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}}}]}}}}),
            "h1",
        );
        let observed_same = with_hash(
            json!({"metadata": {"name": "m", "uid": "u", "resourceVersion": "9"}, "spec": {"replicas": 2, "progressDeadlineSeconds": 600, "template": {"spec": {"containers": [{"name": "c", "image": "a:1", "terminationMessagePath": "/dev/termination-log", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}}, "status": {"replicas": 2}}),
            "h1",
        );
        let observed_edited = with_hash(
            json!({"metadata": {"name": "m"}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "evil:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}}}),
            "h1",
        );
        let observed_scaled = with_hash(
            json!({"metadata": {"name": "m"}, "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "c", "image": "a:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}}}),
            "h1",
        );
        let observed_old_hash = with_hash(observed_same.clone(), "h0");
        let cases = [
            ("missing", None, Need::Create),
            (
                "converged, with server defaults and canonical quantities",
                Some(&observed_same),
                Need::Nothing,
            ),
            (
                "hand-edited image",
                Some(&observed_edited),
                Need::RestoreDrift,
            ),
            ("hand-scaled", Some(&observed_scaled), Need::RestoreDrift),
            ("spec changed", Some(&observed_old_hash), Need::Update),
        ];
        for (name, observed, want) in cases {
            assert_eq!(need(&desired, observed).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn replicas_left_out_are_not_drift() {
        // Under autoscaling the Deployment is applied without replicas.
        let desired = with_hash(json!({"spec": {"template": {}}}), "h");
        let observed = with_hash(json!({"spec": {"replicas": 7, "template": {}}}), "h");
        assert_eq!(need(&desired, Some(&observed)).unwrap(), Need::Nothing);
    }

    #[test]
    fn empty_collections_match_absent_ones() {
        let desired = with_hash(
            json!({"spec": {"tolerations": [], "nodeSelector": {}}}),
            "h",
        );
        let observed = with_hash(json!({"spec": {}}), "h");
        assert_eq!(need(&desired, Some(&observed)).unwrap(), Need::Nothing);
    }

    #[test]
    fn quantities() {
        for (a, b, same) in [
            ("1000m", "1", true),
            ("1Gi", "1024Mi", true),
            ("0.5", "500m", true),
            ("1e3", "1k", true),
            ("1", "2", false),
            ("1Gi", "1G", false),
            ("lots", "lots", false),
        ] {
            assert_eq!(same_quantity(a, b), same, "{a} vs {b}");
        }
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = hash_of(&json!({"a": 1, "b": [1, 2]})).unwrap();
        assert_eq!(a, hash_of(&json!({"a": 1, "b": [1, 2]})).unwrap());
        assert_ne!(a, hash_of(&json!({"a": 1, "b": [2, 1]})).unwrap());
        assert_eq!(a.len(), 16);
    }
}
