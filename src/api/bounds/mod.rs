//! A bound on every string, list and map of the spec, and the worst-case
//! size those bounds allow.
//!
//! One operator serves every team, and every byte of a spec is stored in
//! etcd, copied into revision snapshots and read by the operator: a spec
//! without bounds lets one team fill the operator's memory (issue 24). The
//! CRD's schema therefore bounds every node of `spec`: the fields that carry
//! text (arguments, env values, annotations, probe commands) by the table
//! below, every other string, list and map (the Kubernetes types included,
//! and any field added later) by `DEFAULTS`. Where many items may each be
//! long, a CEL rule bounds their total. `worst_case` adds it all up, and a
//! test holds the whole spec under `SPEC_BUDGET`, well under etcd's 1.5 MiB
//! object limit next to the bounded status (docs/security.md, "Bounded
//! spec"). docs/api.md lists every limit (`limits_markdown`).

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

mod limits;
pub use limits::{Bound, LIMITS, Limit};

/// The most a spec may take as JSON, whatever it holds: every field at its
/// bound at once, the pod template's Kubernetes types included (issue 25).
/// A third of a MiB of that is the model container's text (args, env,
/// annotations); the rest is what a Deployment's pod template can say. With
/// a status as large as it gets (under 512 KiB, `status::bounded`) such an
/// object can pass etcd's 1.5 MiB only with both at their extremes; the API
/// server then refuses the status write, which the operator reports, and
/// nothing of another object is touched (docs/security.md, "Bounded spec").
pub const SPEC_BUDGET: u64 = 1024 * 1024;

/// Bounds for every node the table does not name.
pub struct Defaults {
    /// Names, keys, paths, enum-like values.
    pub string: u64,
    /// Lists of structured items (tolerations, headers, claims).
    pub items: u64,
    /// Entries of a map.
    pub properties: u64,
    /// A map key: a qualified name (253-character prefix, '/', 63 characters).
    pub key: u64,
    /// An int-or-string: a port, a quantity or a percentage.
    pub int_or_string: u64,
}

pub const DEFAULTS: Defaults = Defaults {
    string: 256,
    items: 32,
    properties: 64,
    key: 317,
    int_or_string: 64,
};

/// Bounds every node of the spec schema: the table's limits where it names
/// the node, `DEFAULTS` where the node has no bound of its own.
pub fn apply(spec: &mut Value) {
    bound_node(spec, "", false);
}

fn bound_node(node: &mut Value, path: &str, in_any_of: bool) {
    let Some(schema) = node.as_object_mut() else {
        return;
    };
    // Of the totals and of the one-ofs, the last that matches is the node's.
    let last_total = limits_at(path)
        .filter(|l| matches!(l.bound, Bound::Total { .. }))
        .last();
    let last_one_of = limits_at(path)
        .filter(|l| matches!(l.bound, Bound::OneOf { .. }))
        .last();
    for limit in limits_at(path) {
        let superseded = match limit.bound {
            Bound::Total { .. } => !last_total.is_some_and(|l| std::ptr::eq(l, limit)),
            Bound::OneOf { .. } => !last_one_of.is_some_and(|l| std::ptr::eq(l, limit)),
            _ => false,
        };
        if superseded {
            continue;
        }
        match &limit.bound {
            Bound::Length(n) if kind(schema) == Kind::String => set(schema, "maxLength", *n),
            Bound::Items(n) if kind(schema) == Kind::Array => set(schema, "maxItems", *n),
            Bound::Entries(n) if kind(schema) == Kind::Map => set(schema, "maxProperties", *n),
            Bound::Length(_) | Bound::Items(_) | Bound::Entries(_) => {}
            Bound::Total { bytes, of, what } => add_rule(
                schema,
                total_rule(schema, *bytes, *of),
                format!("at most {bytes} bytes in all{what} (docs/api.md, \"Limits\")"),
            ),
            Bound::OneOf { groups, what } => {
                add_rule(schema, one_of_rule(groups), (*what).to_string())
            }
            Bound::Nested { .. } => {}
        }
    }
    let (items, entries) = limits_at(path)
        .filter_map(|l| match l.bound {
            Bound::Nested { items, entries } => Some((items, entries)),
            _ => None,
        })
        .last()
        .unwrap_or((DEFAULTS.items, DEFAULTS.properties));
    let int_or_string = schema.contains_key("x-kubernetes-int-or-string");
    match kind(schema) {
        Kind::String if !in_any_of && !schema.contains_key("enum") => {
            default(schema, "maxLength", DEFAULTS.string)
        }
        _ if int_or_string => default(schema, "maxLength", DEFAULTS.int_or_string),
        Kind::Array => default(schema, "maxItems", items),
        Kind::Map => {
            default(schema, "maxProperties", entries);
            let key = DEFAULTS.key;
            add_rule(
                schema,
                format!("self.all(k, size(k) <= {key})"),
                format!("keys must be at most {key} characters"),
            );
        }
        _ => {}
    }
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for (name, child) in properties.iter_mut() {
            bound_node(child, &join(path, name), false);
        }
    }
    if let Some(items) = schema.get_mut("items") {
        bound_node(items, &format!("{path}[]"), false);
    }
    if let Some(values @ Value::Object(_)) = schema.get_mut("additionalProperties") {
        bound_node(values, &format!("{path}{{}}"), false);
    }
    if let Some(Value::Array(branches)) = schema.get_mut("anyOf") {
        for branch in branches {
            bound_node(branch, path, true);
        }
    }
}

#[derive(PartialEq)]
enum Kind {
    String,
    Array,
    Map,
    Object,
    Other,
}

fn kind(schema: &Map<String, Value>) -> Kind {
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => Kind::String,
        Some("array") => Kind::Array,
        Some("object")
            if schema
                .get("additionalProperties")
                .is_some_and(Value::is_object) =>
        {
            Kind::Map
        }
        Some("object") => Kind::Object,
        _ => Kind::Other,
    }
}

fn set(schema: &mut Map<String, Value>, key: &str, n: u64) {
    schema.insert(key.to_string(), n.into());
}

fn default(schema: &mut Map<String, Value>, key: &str, n: u64) {
    schema.entry(key).or_insert_with(|| n.into());
}

fn add_rule(schema: &mut Map<String, Value>, rule: String, message: String) {
    let rules = schema
        .entry("x-kubernetes-validations")
        .or_insert_with(|| json!([]));
    if let Some(rules) = rules.as_array_mut() {
        rules.push(json!({"rule": rule, "message": message}));
    }
}

/// The CEL rule that sums the sizes: of a list's strings, of a member of
/// its items, or of a map's values.
fn total_rule(schema: &Map<String, Value>, bytes: u64, of: Option<&str>) -> String {
    let sizes = match (kind(schema), of) {
        (Kind::Map, _) => "self.map(k, size(self[k]))".to_string(),
        (_, Some(member)) => format!("self.map(x, has(x.{member}) ? size(x.{member}) : 0)"),
        (_, None) => "self.map(x, size(x))".to_string(),
    };
    format!("{sizes}.sum() <= {bytes}")
}

/// At most one group has a field set.
fn one_of_rule(groups: &[&[&str]]) -> String {
    let set: Vec<String> = groups
        .iter()
        .map(|group| {
            group
                .iter()
                .map(|field| format!("has(self.{field})"))
                .collect::<Vec<_>>()
                .join(" || ")
        })
        .collect();
    format!("[{}].filter(x, x).size() <= 1", set.join(", "))
}

/// The table's limits on the node at `path`, in table order (a later
/// bound of the same kind replaces an earlier one).
fn limits_at(path: &str) -> impl Iterator<Item = &'static Limit> + '_ {
    LIMITS.iter().filter(move |l| glob(l.path, path))
}

/// Whether `path` matches `pattern`, where `*` stands for any characters
/// (dots included): one entry bounds a Kubernetes type wherever it sits,
/// e.g. `*.matchExpressions` in every label selector.
fn glob(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, tail)) => path.strip_prefix(head).is_some_and(|rest| {
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn display(path: &str) -> String {
    join("spec", path)
}

/// A node whose size nothing bounds.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0} has no bound")]
pub struct Unbounded(pub String);

/// The most bytes the spec's JSON can take under the schema's bounds.
pub fn worst_case(spec: &Value) -> Result<u64, Unbounded> {
    worst(spec, "")
}

/// Quotes, separators and a little slack per value.
const OVERHEAD: u64 = 4;
/// An integer, a number or a boolean as JSON.
const SCALAR: u64 = 24;

fn worst(node: &Value, path: &str) -> Result<u64, Unbounded> {
    let unbounded = || Unbounded(display(path));
    let schema = node.as_object().ok_or_else(unbounded)?;
    if let Some(Value::Array(values)) = schema.get("enum") {
        let longest = values.iter().map(|v| v.to_string().len() as u64).max();
        return Ok(longest.unwrap_or(0) + OVERHEAD);
    }
    let number = |key: &str| schema.get(key).and_then(Value::as_u64);
    let total = limits_at(path)
        .filter_map(|l| match l.bound {
            Bound::Total { bytes, of, .. } => Some((bytes, of)),
            _ => None,
        })
        .last();
    if schema.contains_key("x-kubernetes-int-or-string") {
        return Ok(number("maxLength").ok_or_else(unbounded)?.max(SCALAR) + OVERHEAD);
    }
    match kind(schema) {
        Kind::String => Ok(number("maxLength").ok_or_else(unbounded)? + OVERHEAD),
        Kind::Array => {
            let items = number("maxItems").ok_or_else(unbounded)?;
            let item_path = format!("{path}[]");
            let item = worst(schema.get("items").ok_or_else(unbounded)?, &item_path)?;
            Ok(match total {
                // The strings themselves count once, in the total.
                Some((bytes, None)) => items * OVERHEAD + bytes,
                Some((bytes, Some(member))) => {
                    let member = join(&item_path, member);
                    let own = longest_string(schema.get("items"), &member).unwrap_or(0);
                    items * (item - own + OVERHEAD) + bytes
                }
                None => items * (item + OVERHEAD),
            } + OVERHEAD)
        }
        Kind::Map => {
            let entries = number("maxProperties").ok_or_else(unbounded)?;
            let value_path = format!("{path}{{}}");
            let value = worst(
                schema.get("additionalProperties").ok_or_else(unbounded)?,
                &value_path,
            )?;
            let value = match total {
                Some(_) => OVERHEAD,
                None => value,
            };
            Ok(entries * (DEFAULTS.key + OVERHEAD + value)
                + total.map_or(0, |(bytes, _)| bytes)
                + OVERHEAD)
        }
        Kind::Object => {
            if schema.contains_key("x-kubernetes-preserve-unknown-fields") {
                return Err(unbounded());
            }
            let mut sum = OVERHEAD;
            let one_of = limits_at(path)
                .filter_map(|l| match l.bound {
                    Bound::OneOf { groups, .. } => Some(groups),
                    _ => None,
                })
                .last();
            let mut groups = vec![0; one_of.map_or(0, <[_]>::len)];
            if let Some(Value::Object(properties)) = schema.get("properties") {
                for (name, child) in properties {
                    let field = name.len() as u64 + OVERHEAD + worst(child, &join(path, name))?;
                    let group =
                        one_of.and_then(|g| g.iter().position(|g| g.contains(&name.as_str())));
                    match group {
                        Some(n) => groups[n] += field,
                        None => sum += field,
                    }
                }
            }
            Ok(sum + groups.into_iter().max().unwrap_or(0))
        }
        Kind::Other => match schema.get("type").and_then(Value::as_str) {
            Some("integer" | "number" | "boolean") => Ok(SCALAR),
            _ => Err(unbounded()),
        },
    }
}

/// The `maxLength` of the string at `member` inside `items`.
fn longest_string(items: Option<&Value>, member: &str) -> Option<u64> {
    let name = member.rsplit('.').next()?;
    items?
        .get("properties")?
        .get(name)?
        .get("maxLength")?
        .as_u64()
}

/// Every limit of the spec schema as a Markdown table, for docs/api.md.
pub fn limits_markdown(spec: &Value) -> String {
    let mut rows = Vec::new();
    collect(spec, "", &mut rows);
    let mut out = String::from("| field | limit |\n| --- | --- |\n");
    for (path, limit) in rows {
        let _ = writeln!(out, "| `{path}` | {limit} |");
    }
    out
}

fn collect(node: &Value, path: &str, rows: &mut Vec<(String, String)>) {
    let Some(schema) = node.as_object() else {
        return;
    };
    let mut limits = Vec::new();
    for (key, what) in [
        ("maxLength", "characters"),
        ("maxItems", "items"),
        ("maxProperties", "entries"),
    ] {
        if let Some(n) = schema.get(key).and_then(Value::as_u64) {
            limits.push(format!("{n} {what}"));
        }
    }
    let total = limits_at(path)
        .filter_map(|l| match l.bound {
            Bound::Total { bytes, .. } => Some(bytes),
            _ => None,
        })
        .last();
    if let Some(bytes) = total {
        limits.push(format!("{bytes} bytes in all"));
    }
    if !limits.is_empty() && !path.is_empty() {
        rows.push((path.to_string(), limits.join(", ")));
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (name, child) in properties {
            collect(child, &join(path, name), rows);
        }
    }
    if let Some(items) = schema.get("items") {
        collect(items, &format!("{path}[]"), rows);
    }
    if let Some(values) = schema.get("additionalProperties") {
        collect(values, &format!("{path}{{}}"), rows);
    }
}

#[cfg(test)]
mod tests;
