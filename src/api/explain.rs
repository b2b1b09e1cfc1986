//! What `kubectl explain` shows of the Kubernetes types embedded in the
//! spec: the first sentence of each description, so the CRD stays within
//! what a client-side `kubectl apply` can store (its last-applied
//! annotation is capped at 256 KiB).

use serde_json::Value;

use super::server_spec::EMBEDDED_KUBERNETES_TYPES;

/// Cuts the descriptions inside the embedded Kubernetes types of the spec
/// schema to their first sentence; the fields' own descriptions (ours) stay.
pub fn shorten_embedded(spec: &mut Value) {
    let Some(server) = spec.pointer_mut("/properties/server/properties") else {
        return;
    };
    for field in EMBEDDED_KUBERNETES_TYPES {
        if let Some(node) = server.get_mut(*field) {
            shorten_below(node);
        }
    }
}

fn shorten_below(node: &mut Value) {
    match node {
        Value::Object(schema) => {
            for (key, child) in schema.iter_mut() {
                match (key.as_str(), child) {
                    // A property named "description" is a field, not text.
                    ("properties", Value::Object(properties)) => {
                        for property in properties.values_mut() {
                            shorten(property);
                            shorten_below(property);
                        }
                    }
                    (_, child) => shorten_below(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(shorten_below),
        _ => {}
    }
    if let Some(items) = node.get_mut("items") {
        shorten(items);
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
            Some(b' ') => after.is_some_and(|c| c.is_ascii_uppercase() || c == b'\n'),
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
}
