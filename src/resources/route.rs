//! Gateway API routing of a canary: the two Services an HTTPRoute splits
//! between, where in the user's HTTPRoute their weights are, and the JSON
//! patch that sets those weights and nothing else.
//!
//! Why a JSON patch and not server-side apply: `HTTPRoute.spec.rules` and
//! `rules[].backendRefs` are atomic lists in the Gateway API's CRDs, so an
//! apply of one weight would have to send (and then own) the user's whole
//! rules. The patch sends only `weight` values, each guarded by a `test` of
//! the backend's name at that position: if the user reordered or edited the
//! rules since the read, the API server refuses the patch and nothing is
//! written (docs/canary.md).

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::{labels, service};
use crate::api::{ModelDeployment, RolloutStrategy};

/// The HTTPRoute a Canary ModelDeployment splits its traffic with, when it
/// uses one.
pub fn gateway_route(md: &ModelDeployment) -> Option<&str> {
    if md.spec.rollout.strategy != RolloutStrategy::Canary {
        return None;
    }
    let routing = md.spec.rollout.canary.as_ref()?.traffic_routing.as_ref()?;
    Some(routing.gateway_api.as_ref()?.http_route.as_str())
}

pub fn stable_service_name(name: &str) -> String {
    format!("{name}-stable")
}

pub fn canary_service_name(name: &str) -> String {
    format!("{name}-canary")
}

/// The Services an HTTPRoute splits between, by the revision label of the
/// pods: `<name>-stable` selects `stable` (`None`: every pod of the model,
/// while the stable Deployment moves between revisions and no canary runs),
/// `<name>-canary` selects `canary` (`None`: no pod, while no canary runs).
/// A promotion then moves the stable Service to the canary's pods by
/// changing a selector, with no pod restarted. Same port and type as the
/// model's Service.
pub fn split_services(
    md: &ModelDeployment,
    model_name: &str,
    stable: Option<i64>,
    canary: Option<i64>,
) -> [Service; 2] {
    let name = md.name_any();
    let one = |service_name: String, revision: Option<String>| {
        let mut s = service(md, model_name);
        s.metadata.name = Some(service_name);
        if let Some(ServiceSpec {
            selector: Some(selector),
            ..
        }) = s.spec.as_mut()
            && let Some(revision) = revision
        {
            selector.insert(labels::REVISION.to_string(), revision);
        }
        s
    };
    let canary = canary.map_or_else(|| NO_REVISION.to_string(), |r| r.to_string());
    [
        one(stable_service_name(&name), stable.map(|r| r.to_string())),
        one(canary_service_name(&name), Some(canary)),
    ]
}

/// A revision label value no pod has (revisions are numbers from 1).
const NO_REVISION: &str = "none";

/// Where a route splits between the two Services: per rule, the positions
/// of the stable and canary backendRefs and their weights now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    rules: Vec<SplitRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SplitRule {
    rule: usize,
    stable: Backend,
    canary: Backend,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Backend {
    index: usize,
    name: String,
    weight: i64,
}

/// Weights as (stable, canary), in percent of the split.
pub type Weights = (i32, i32);

impl Split {
    /// Finds the rules of `route` (an HTTPRoute as JSON) that split between
    /// the Services of ModelDeployment `name`. The error says what to fix.
    pub fn find(route: &Value, name: &str) -> Result<Self, String> {
        let route_name = route["metadata"]["name"].as_str().unwrap_or_default();
        let route_namespace = route["metadata"]["namespace"].as_str();
        let (stable_name, canary_name) = (stable_service_name(name), canary_service_name(name));
        let ours = |backend: &Value| -> Option<bool> {
            let kind = backend["kind"].as_str().unwrap_or("Service");
            let group = backend["group"].as_str().unwrap_or("");
            let namespace = backend["namespace"].as_str();
            let local = namespace.is_none() || namespace == route_namespace;
            let named = backend["name"].as_str()?;
            (kind == "Service" && group.is_empty() && local)
                .then_some(())
                .and_then(|()| match named {
                    n if n == stable_name => Some(true),
                    n if n == canary_name => Some(false),
                    _ => None,
                })
        };
        let empty = Vec::new();
        let rules = route["spec"]["rules"].as_array().unwrap_or(&empty);
        let mut split = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            let backends = rule["backendRefs"].as_array().unwrap_or(&empty);
            let mut stable = Vec::new();
            let mut canary = Vec::new();
            for (index, backend) in backends.iter().enumerate() {
                let found = Backend {
                    index,
                    name: backend["name"].as_str().unwrap_or_default().to_string(),
                    // The API server defaults an absent weight to 1.
                    weight: backend["weight"].as_i64().unwrap_or(1),
                };
                match ours(backend) {
                    Some(true) => stable.push(found),
                    Some(false) => canary.push(found),
                    None => {}
                }
            }
            if stable.is_empty() && canary.is_empty() {
                continue;
            }
            let rule_no = r + 1;
            let (Some(s), Some(c)) = (stable.first(), canary.first()) else {
                return Err(format!(
                    "rule {rule_no} of HTTPRoute {route_name} sends to only one of the Services \
                     {stable_name} and {canary_name}; a rule that splits the model's traffic \
                     must list both as backendRefs"
                ));
            };
            if stable.len() > 1 || canary.len() > 1 || backends.len() > 2 {
                return Err(format!(
                    "rule {rule_no} of HTTPRoute {route_name} must have exactly two \
                     backendRefs, the Services {stable_name} and {canary_name}, so that their \
                     weights are the whole split"
                ));
            }
            split.push(SplitRule {
                rule: r,
                stable: s.clone(),
                canary: c.clone(),
            });
        }
        if split.is_empty() {
            return Err(format!(
                "HTTPRoute {route_name} has no rule whose backendRefs are the Services \
                 {stable_name} and {canary_name} (docs/canary.md shows one)"
            ));
        }
        Ok(Self { rules: split })
    }

    /// The weights now, when every splitting rule has the same; a rule
    /// that differs (edited by hand) reads as `None`, i.e. "to be set".
    pub fn weights(&self) -> Option<Weights> {
        let first = self.rules.first()?;
        let weights = (first.stable.weight, first.canary.weight);
        self.rules
            .iter()
            .all(|r| (r.stable.weight, r.canary.weight) == weights)
            .then(|| {
                let pct = |w: i64| i32::try_from(w).unwrap_or(i32::MAX);
                (pct(weights.0), pct(weights.1))
            })
    }

    /// The JSON patch that sets `weights` in every splitting rule, or
    /// `None` when they already are.
    pub fn patch(&self, weights: Weights) -> Option<Value> {
        if self.weights() == Some(weights) {
            return None;
        }
        let mut ops = Vec::new();
        for rule in &self.rules {
            for (backend, weight) in [(&rule.stable, weights.0), (&rule.canary, weights.1)] {
                let at = format!("/spec/rules/{}/backendRefs/{}", rule.rule, backend.index);
                ops.push(
                    json!({"op": "test", "path": format!("{at}/name"), "value": backend.name}),
                );
                ops.push(json!({"op": "add", "path": format!("{at}/weight"), "value": weight}));
            }
        }
        Some(Value::Array(ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(rules: Value) -> Value {
        json!({"metadata": {"name": "r", "namespace": "team"}, "spec": {"rules": rules}})
    }

    #[test]
    fn finds_the_split_and_patches_only_weights_guarded_by_names() {
        let r = route(json!([
            {"backendRefs": [{"name": "other", "port": 80}]},
            {"matches": [{"path": {"value": "/v1"}}], "backendRefs": [
                {"name": "m-canary", "port": 80, "weight": 0},
                {"name": "m-stable", "port": 80, "weight": 100},
            ]},
        ]));
        let split = Split::find(&r, "m").unwrap();
        assert_eq!(split.weights(), Some((100, 0)));
        assert_eq!(split.patch((100, 0)), None, "already set: no write");
        let patch = split.patch((90, 10)).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/spec/rules/1/backendRefs/1/name", "value": "m-stable"},
                {"op": "add", "path": "/spec/rules/1/backendRefs/1/weight", "value": 90},
                {"op": "test", "path": "/spec/rules/1/backendRefs/0/name", "value": "m-canary"},
                {"op": "add", "path": "/spec/rules/1/backendRefs/0/weight", "value": 10},
            ])
        );
        // The patch is a valid JSON patch the client can send.
        serde_json::from_value::<json_patch::Patch>(patch).unwrap();
    }

    #[test]
    fn absent_weights_are_the_api_default_and_rules_that_differ_are_reset() {
        let r = route(json!([
            {"backendRefs": [{"name": "m-stable"}, {"name": "m-canary"}]},
            {"backendRefs": [{"name": "m-stable", "weight": 50}, {"name": "m-canary", "weight": 50}]},
        ]));
        let split = Split::find(&r, "m").unwrap();
        assert_eq!(split.weights(), None);
        let ops = split.patch((100, 0)).unwrap();
        assert_eq!(ops.as_array().unwrap().len(), 8);
        let same = route(json!([{"backendRefs": [{"name": "m-stable"}, {"name": "m-canary"}]}]));
        assert_eq!(Split::find(&same, "m").unwrap().weights(), Some((1, 1)));
    }

    #[test]
    fn unsuitable_routes_say_what_to_fix() {
        let cases = [
            (
                json!([]),
                "no rule whose backendRefs are the Services m-stable and m-canary",
            ),
            (
                json!([{"backendRefs": [{"name": "m"}]}]),
                "no rule whose backendRefs are the Services",
            ),
            (
                json!([{"backendRefs": [{"name": "m-stable"}]}]),
                "rule 1 of HTTPRoute r sends to only one",
            ),
            (
                json!([{"backendRefs": [{"name": "m-stable"}, {"name": "m-canary"}, {"name": "x"}]}]),
                "must have exactly two backendRefs",
            ),
            (
                json!([{"backendRefs": [{"name": "m-stable"}, {"name": "m-canary"}, {"name": "m-canary"}]}]),
                "must have exactly two backendRefs",
            ),
            // Another namespace's or another kind's backend of that name is
            // not ours.
            (
                json!([{"backendRefs": [{"name": "m-stable", "namespace": "other"}, {"name": "m-canary"}]}]),
                "sends to only one",
            ),
            (
                json!([{"backendRefs": [{"name": "m-stable", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"}, {"name": "m-canary"}]}]),
                "sends to only one",
            ),
        ];
        for (rules, expected) in cases {
            let err = Split::find(&route(rules.clone()), "m").unwrap_err();
            assert!(err.contains(expected), "{rules}: {err}");
        }
        let same_namespace = route(json!([{"backendRefs": [
            {"name": "m-stable", "namespace": "team", "kind": "Service", "group": ""},
            {"name": "m-canary"},
        ]}]));
        assert!(Split::find(&same_namespace, "m").is_ok());
    }
}
