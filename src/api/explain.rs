//! What `kubectl explain` shows of the Kubernetes types embedded in the
//! spec: the first sentence of each description, so the CRD stays within
//! what a client-side `kubectl apply` can store (its last-applied
//! annotation is capped at 256 KiB).

use serde_json::Value;

use super::server_spec::EMBEDDED_KUBERNETES_TYPES;

/// Cuts the descriptions inside the embedded Kubernetes types of the spec
/// schema to their first sentence; the fields' own descriptions (ours) stay.
pub fn shorten_embedded(spec: &mut Value) {
    if let Some(server) = spec.pointer_mut("/properties/server/properties") {
        for field in EMBEDDED_KUBERNETES_TYPES {
            if let Some(node) = server.get_mut(*field) {
                shorten_below(node);
            }
        }
    }
    // The autoscaling/v2 types: their first two levels (a metric source
    // and its metric and target, a scaling direction and its policies) in
    // a sentence, nothing below. They repeat one
    // metric identifier and label selector five times, and `kubectl explain
    // hpa.spec.metrics` has the whole text.
    if let Some(autoscaling) = spec.pointer_mut("/properties/autoscaling/properties") {
        for field in AUTOSCALING_TYPES {
            if let Some(node) = autoscaling.get_mut(*field) {
                let first = match node.get("items").is_some() {
                    true => &mut node["items"],
                    false => node,
                };
                for property in properties_of(first) {
                    shorten(property);
                    for inner in properties_of(property) {
                        shorten(inner);
                        drop_descriptions_below(inner);
                    }
                }
            }
        }
    }
}

/// The autoscaling/v2 types in `autoscaling`.
const AUTOSCALING_TYPES: &[&str] = &["metrics", "behavior"];

fn properties_of(schema: &mut Value) -> impl Iterator<Item = &mut Value> {
    schema
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|p| p.values_mut())
}

/// Removes the descriptions of every schema below `node` (not its own).
fn drop_descriptions_below(node: &mut Value) {
    for_each_schema_below(node, &mut |schema| {
        if let Some(schema) = schema.as_object_mut() {
            schema.remove("description");
        }
    });
}

fn shorten_below(node: &mut Value) {
    for_each_schema_below(node, &mut shorten);
}

/// Calls `f` on every schema below `node`: its properties', items' and
/// map values' schemas, at any depth. A property named "description" is a
/// field, not text, so only schemas are visited.
fn for_each_schema_below(node: &mut Value, f: &mut impl FnMut(&mut Value)) {
    match node {
        Value::Object(schema) => {
            for (key, child) in schema.iter_mut() {
                match (key.as_str(), child) {
                    ("properties", Value::Object(properties)) => {
                        for property in properties.values_mut() {
                            f(property);
                            for_each_schema_below(property, f);
                        }
                    }
                    ("items" | "additionalProperties", child) => {
                        f(child);
                        for_each_schema_below(child, f);
                    }
                    (_, child) => for_each_schema_below(child, f),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| for_each_schema_below(i, f)),
        _ => {}
    }
}

fn shorten(schema: &mut Value) {
    if let Some(Value::String(text)) = schema.get_mut("description") {
        *text = first_sentence(text).to_string();
    }
}

/// Up to the first full stop that ends a sentence: followed by a space and
/// a capital letter or a line break, and not an abbreviation ("e.g.").
pub fn first_sentence(text: &str) -> &str {
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('.') {
        let before = &text[..i];
        if before.ends_with("e.g") || before.ends_with("i.e") || before.ends_with("etc") {
            continue;
        }
        let next = bytes.get(i + 1).copied();
        let after = bytes.get(i + 2).copied();
        let ends = match next {
            None | Some(b'\n') => true,
            // Some upstream texts put two spaces between sentences.
            Some(b' ') => after.is_some_and(|c| c.is_ascii_uppercase() || c == b'\n' || c == b' '),
            _ => false,
        };
        if ends {
            return &text[..=i];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_first_sentence_ends_at_a_full_stop_before_a_new_sentence() {
        for (text, first) in [
            ("One. Two.", "One."),
            ("Uses e.g. this. More.", "Uses e.g. this."),
            ("Path 1.2 here.\nMore", "Path 1.2 here."),
            ("No stop", "No stop"),
            ("Ends.", "Ends."),
            ("Version v1.2. Next", "Version v1.2."),
            (
                "Pods (for example, qps).  The values.",
                "Pods (for example, qps).",
            ),
        ] {
            assert_eq!(first_sentence(text), first, "{text:?}");
        }
    }

    #[test]
    fn only_the_embedded_types_inner_descriptions_are_cut() {
        let mut spec = json!({"properties": {"server": {"properties": {
            "volumes": {"description": "Ours. Kept whole.", "items": {"properties": {
                "name": {"description": "Name. Long text."},
                "description": {"description": "A field. Cut."},
            }}},
            "image": {"description": "Image. Kept whole."},
        }}}});
        shorten_embedded(&mut spec);
        let server = &spec["properties"]["server"]["properties"];
        assert_eq!(server["volumes"]["description"], "Ours. Kept whole.");
        let items = &server["volumes"]["items"]["properties"];
        assert_eq!(items["name"]["description"], "Name.");
        assert_eq!(items["description"]["description"], "A field.");
        assert_eq!(server["image"]["description"], "Image. Kept whole.");
    }

    #[test]
    fn the_autoscaling_types_keep_a_sentence_on_their_first_two_levels_only() {
        let mut spec = json!({"properties": {"autoscaling": {"properties": {
            "metrics": {"description": "Ours. Kept whole.", "items": {"properties": {
                "pods": {"description": "Pods. More.", "properties": {
                    "metric": {"description": "Metric. More.", "properties": {
                        "selector": {"description": "Gone.", "properties": {
                            "matchLabels": {"description": "Gone.", "additionalProperties": {"description": "Gone."}}}}}}}},
                "type": {"description": "Type. More."},
            }}},
            "behavior": {"description": "Ours.", "properties": {
                "scaleUp": {"description": "Up. More.", "properties": {
                    "policies": {"description": "Policies. More.", "items": {"description": "Gone."}}}}}},
        }}}});
        shorten_embedded(&mut spec);
        let autoscaling = &spec["properties"]["autoscaling"]["properties"];
        assert_eq!(autoscaling["metrics"]["description"], "Ours. Kept whole.");
        let item = &autoscaling["metrics"]["items"]["properties"];
        assert_eq!(item["pods"]["description"], "Pods.");
        assert_eq!(
            item["pods"]["properties"]["metric"]["description"],
            "Metric."
        );
        assert_eq!(item["type"]["description"], "Type.");
        let up = &autoscaling["behavior"]["properties"]["scaleUp"];
        assert_eq!(up["description"], "Up.");
        assert_eq!(up["properties"]["policies"]["description"], "Policies.");
        assert!(!spec.to_string().contains("Gone."), "{spec}");
    }
}
