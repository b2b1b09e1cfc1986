//! The bounds applied, added up and listed.

use super::*;

fn string() -> Value {
    json!({"type": "string"})
}

#[test]
fn every_node_gets_a_bound() {
    let mut spec = json!({"type": "object", "properties": {
        "name": string(),
        "kind": {"type": "string", "enum": ["A", "Bb"]},
        "port": {"x-kubernetes-int-or-string": true,
                 "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "list": {"type": "array", "items": string()},
        "map": {"type": "object", "additionalProperties": string()},
        "kept": {"type": "string", "maxLength": 7},
    }});
    apply(&mut spec);
    let p = &spec["properties"];
    assert_eq!(p["name"]["maxLength"], 256);
    assert!(p["kind"].get("maxLength").is_none(), "an enum is bounded");
    assert_eq!(p["port"]["maxLength"], 64);
    assert!(p["port"]["anyOf"][1].get("maxLength").is_none());
    assert_eq!(p["list"]["maxItems"], 32);
    assert_eq!(p["list"]["items"]["maxLength"], 256);
    assert_eq!(p["map"]["maxProperties"], 64);
    assert_eq!(
        p["map"]["x-kubernetes-validations"][0]["rule"],
        "self.all(k, size(k) <= 317)"
    );
    assert_eq!(p["kept"]["maxLength"], 7);
}

#[test]
fn the_table_names_its_nodes_and_adds_totals() {
    let mut spec = json!({"type": "object", "properties": {
        "server": {"type": "object", "properties": {
            "args": {"type": "array", "items": string()},
            "env": {"type": "array", "maxItems": 256, "items": {"type": "object", "properties": {
                "name": string(), "value": string()}}},
        }},
        "podMetadata": {"type": "object", "properties": {
            "annotations": {"type": "object", "additionalProperties": string()},
        }},
    }});
    apply(&mut spec);
    let server = &spec["properties"]["server"]["properties"];
    assert_eq!(server["args"]["maxItems"], 256);
    assert_eq!(server["args"]["items"]["maxLength"], 16 * 1024);
    assert_eq!(
        server["args"]["x-kubernetes-validations"][0]["rule"],
        "self.map(x, size(x)).sum() <= 32768"
    );
    assert_eq!(server["env"]["maxItems"], 256, "an explicit bound stays");
    assert_eq!(
        server["env"]["x-kubernetes-validations"][0]["rule"],
        "self.map(x, has(x.value) ? size(x.value) : 0).sum() <= 32768"
    );
    let annotations = &spec["properties"]["podMetadata"]["properties"]["annotations"];
    let rules = annotations["x-kubernetes-validations"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["rule"] == "self.map(k, size(self[k])).sum() <= 32768"),
        "{rules:?}"
    );
}

#[test]
fn the_worst_case_adds_up_the_bounds() {
    let spec = json!({"type": "object", "properties": {
        "s": {"type": "string", "maxLength": 10},
        "l": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 5}},
        "n": {"type": "integer"},
    }});
    let expected = OVERHEAD
        + (1 + OVERHEAD + 10 + OVERHEAD)
        + (1 + OVERHEAD + 3 * (5 + OVERHEAD + OVERHEAD) + OVERHEAD)
        + (1 + OVERHEAD + SCALAR);
    assert_eq!(worst_case(&spec), Ok(expected));
}

#[test]
fn a_node_without_a_bound_is_named() {
    let spec = json!({"type": "object", "properties": {"a": {"type": "object", "properties": {
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}});
    assert_eq!(worst_case(&spec), Err(Unbounded("spec.a.free".into())));
    let spec = json!({"type": "object", "properties": {"s": string()}});
    assert_eq!(worst_case(&spec), Err(Unbounded("spec.s".into())));
}

#[test]
fn the_whole_spec_stays_within_its_budget() {
    let spec = crate::api::spec_schema();
    let bytes = worst_case(&spec).unwrap_or_else(|e| panic!("{e}"));
    println!("worst-case spec: {bytes} bytes of {SPEC_BUDGET}");
    let by_field: Vec<String> = [
        "model",
        "server",
        "podMetadata",
        "autoscaling",
        "rollout",
        "alerts",
    ]
    .iter()
    .map(|f| format!("{f}: {:?}", worst(&spec["properties"][f], f)))
    .collect();
    assert!(
        bytes <= SPEC_BUDGET,
        "{bytes} > {SPEC_BUDGET}: {by_field:?}"
    );
}

#[test]
fn a_total_counts_its_strings_once() {
    let mut spec = json!({"type": "object", "properties": {"server": {"type": "object",
        "properties": {"args": {"type": "array", "items": string()}}}}});
    apply(&mut spec);
    let args = &spec["properties"]["server"]["properties"]["args"];
    let bound = worst(args, "server.args").unwrap();
    assert_eq!(bound, 256 * OVERHEAD + 32 * 1024 + OVERHEAD);
    assert!(bound < 256 * 16 * 1024, "far below items × length");
}
