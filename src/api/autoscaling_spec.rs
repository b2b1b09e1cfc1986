//! `spec.autoscaling`: who sets the model's replica count, and on what.
//!
//! The built-in mode keeps a HorizontalPodAutoscaler with the full
//! autoscaling/v2 vocabulary (metrics and behavior, the HPA's own types);
//! the external mode leaves the count to an outside scaler that writes
//! `spec.replicas` through the scale subresource, as KEDA does. What the
//! API server would only refuse when the operator applies the HPA is
//! refused here, at `kubectl apply`, with the field named.

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscalerBehavior, MetricSpec};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The CPU utilisation the built-in HPA aims for when the spec names no
/// metric.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// The metric sources of autoscaling/v2, each with the field that holds it
/// and the target types the HPA accepts for it.
const SOURCES: &[(&str, &str, &[&str])] = &[
    ("Resource", "resource", &["Utilization", "AverageValue"]),
    (
        "ContainerResource",
        "containerResource",
        &["Utilization", "AverageValue"],
    ),
    ("Pods", "pods", &["AverageValue"]),
    ("Object", "object", &["Value", "AverageValue"]),
    ("External", "external", &["Value", "AverageValue"]),
];

/// How the model's replica count follows load.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode == 'External' || has(self.maxReplicas)").message("autoscaling.maxReplicas is required with mode HPA"))]
#[x_kube(validation = Rule::new("self.mode != 'External' || !(has(self.minReplicas) || has(self.maxReplicas) || has(self.targetCPUUtilizationPercentage) || has(self.metrics) || has(self.behavior))").message("autoscaling.mode External takes no minReplicas, maxReplicas, targetCPUUtilizationPercentage, metrics or behavior: the outside scaler (a KEDA ScaledObject, or an HPA of your own) owns them and writes spec.replicas through the scale subresource"))]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas >= 1").message("autoscaling.minReplicas 0 is refused for the built-in HPA, which needs the HPAScaleToZero feature gate for it: to scale to zero, set autoscaling.mode: External and let KEDA write spec.replicas, or remove autoscaling and set replicas: 0"))]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not be greater than autoscaling.maxReplicas"))]
#[x_kube(validation = Rule::new("!(has(self.targetCPUUtilizationPercentage) && has(self.metrics))").message("autoscaling takes targetCPUUtilizationPercentage or metrics, not both: put a Resource metric for cpu into metrics instead"))]
pub struct AutoscalingSpec {
    /// Who scales. `HPA` (default): the operator keeps a
    /// HorizontalPodAutoscaler on the stable Deployment, from the fields
    /// below. `External`: the operator keeps no HPA and runs `spec.replicas`
    /// pods; an outside scaler (a KEDA ScaledObject, or an HPA of your own)
    /// targets this ModelDeployment's scale subresource and writes
    /// `spec.replicas`, down to 0. Under GitOps, tell Argo CD to ignore
    /// `spec.replicas` (docs/serving.md, "Scaling").
    #[serde(default)]
    pub mode: AutoscalingMode,

    /// Fewest pods the HPA keeps (default 1). 0 needs mode `External`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub min_replicas: Option<i32>,

    /// Most pods the HPA may run. Required with mode `HPA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub max_replicas: Option<i32>,

    /// Average CPU utilisation (percent of requests) the HPA aims for: the
    /// metric when `metrics` is not given (80 when neither is).
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,

    /// The HPA's metrics, as autoscaling/v2 writes them: `Resource` and
    /// `ContainerResource` (cpu, memory), `Pods` (a per-pod series such as
    /// `vllm:num_requests_waiting`, served by a custom metrics adapter),
    /// `Object` and `External` (a queue's length or lag, e.g. from KEDA's or
    /// prometheus-adapter's external metrics). The HPA scales on whichever
    /// asks for the most pods. Each entry sets `type` and the one field that
    /// type names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "metrics_schema")]
    pub metrics: Option<Vec<MetricSpec>>,

    /// How fast the HPA may scale up and down (policies and stabilisation
    /// windows), as autoscaling/v2 writes it. Model servers take minutes to
    /// load: a scale-down stabilisation window keeps loaded pods through a
    /// short lull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "behavior_schema")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// Who sets the replica count.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum AutoscalingMode {
    /// A HorizontalPodAutoscaler the operator keeps.
    #[default]
    #[serde(rename = "HPA")]
    Hpa,
    /// An outside scaler writing `spec.replicas` through the scale
    /// subresource.
    External,
}

impl AutoscalingSpec {
    /// The operator keeps an HPA for this spec.
    pub fn builtin(&self) -> bool {
        self.mode == AutoscalingMode::Hpa
    }
}

/// autoscaling/v2 MetricSpec items, with what the API server checks only
/// on the HPA checked at `kubectl apply`: the type, its one source field,
/// and the target types that source takes.
fn metrics_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut item: Value = generator.subschema_for::<MetricSpec>().into();
    set_enum(&mut item, "type", SOURCES.iter().map(|(t, _, _)| *t));
    let one_source = SOURCES
        .iter()
        .map(|(kind, field, _)| format!("has(self.{field}) == (self.type == '{kind}')"))
        .collect::<Vec<_>>()
        .join(" && ");
    let mut rules = vec![json!({
        "rule": one_source,
        "message": "a metric sets the one field its type names: Resource → resource, ContainerResource → containerResource, Pods → pods, Object → object, External → external",
    })];
    for (_, field, targets) in SOURCES {
        let allowed = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        rules.push(json!({
            "rule": format!("!has(self.{field}) || self.{field}.target.type in [{allowed}]"),
            "message": format!("{field} metrics take target type {}", targets.join(" or ")),
        }));
        if let Some(target) = item.pointer_mut(&format!("/properties/{field}/properties/target")) {
            check_target(target);
        }
    }
    validations(&mut item, rules);
    json!({"type": "array", "items": item})
        .try_into()
        .unwrap_or_else(|_| generator.subschema_for::<Vec<MetricSpec>>())
}

/// A MetricTarget: the one value field its type names, and quantities
/// that parse.
fn check_target(target: &mut Value) {
    set_enum(target, "type", ["Utilization", "Value", "AverageValue"]);
    validations(
        target,
        vec![
            json!({
                "rule": "has(self.averageUtilization) == (self.type == 'Utilization') && has(self.value) == (self.type == 'Value') && has(self.averageValue) == (self.type == 'AverageValue')",
                "message": "a target sets the one field its type names: Utilization → averageUtilization, Value → value, AverageValue → averageValue",
            }),
            json!({
                "rule": "(!has(self.value) || isQuantity(string(self.value))) && (!has(self.averageValue) || isQuantity(string(self.averageValue)))",
                "message": "value and averageValue must be quantities such as 5, 500m or 2Gi",
            }),
        ],
    );
    if let Some(utilization) = target.pointer_mut("/properties/averageUtilization") {
        utilization["minimum"] = json!(1);
    }
}

/// autoscaling/v2 HorizontalPodAutoscalerBehavior, with the ranges the API
/// server enforces on the HPA.
fn behavior_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut behavior: Value = generator
        .subschema_for::<HorizontalPodAutoscalerBehavior>()
        .into();
    for direction in ["scaleUp", "scaleDown"] {
        let Some(rules) = behavior.pointer_mut(&format!("/properties/{direction}")) else {
            continue;
        };
        set_enum(rules, "selectPolicy", ["Max", "Min", "Disabled"]);
        if let Some(window) = rules.pointer_mut("/properties/stabilizationWindowSeconds") {
            window["minimum"] = json!(0);
            window["maximum"] = json!(3600);
        }
        if let Some(policy) = rules.pointer_mut("/properties/policies/items") {
            set_enum(policy, "type", ["Pods", "Percent"]);
            if let Some(value) = policy.pointer_mut("/properties/value") {
                value["minimum"] = json!(1);
            }
            if let Some(period) = policy.pointer_mut("/properties/periodSeconds") {
                period["minimum"] = json!(1);
                period["maximum"] = json!(1800);
            }
        }
    }
    behavior
        .try_into()
        .unwrap_or_else(|_| generator.subschema_for::<HorizontalPodAutoscalerBehavior>())
}

fn set_enum<'a>(schema: &mut Value, field: &str, values: impl IntoIterator<Item = &'a str>) {
    if let Some(property) = schema.pointer_mut(&format!("/properties/{field}")) {
        property["enum"] = values.into_iter().collect();
    }
}

fn validations(schema: &mut Value, rules: Vec<Value>) {
    if let Some(object) = schema.as_object_mut() {
        object.insert("x-kubernetes-validations".into(), Value::Array(rules));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Value) -> AutoscalingSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn defaults_to_the_builtin_hpa() {
        let s = spec(json!({"maxReplicas": 3}));
        assert!(s.builtin());
        assert_eq!(s.min_replicas, None);
        assert_eq!(s.target_cpu_utilization_percentage, None);
        assert!(!spec(json!({"mode": "External"})).builtin());
    }

    #[test]
    fn the_schema_names_every_source_and_its_targets() {
        let schema = serde_json::to_value(crate::api::crd()).unwrap();
        let metrics = schema
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/autoscaling/properties/metrics/items")
            .unwrap();
        assert_eq!(
            metrics.pointer("/properties/type/enum").unwrap(),
            &json!([
                "Resource",
                "ContainerResource",
                "Pods",
                "Object",
                "External"
            ])
        );
        let messages: Vec<&str> = metrics["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["message"].as_str())
            .collect();
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("a metric sets the one field its type names")),
            "{messages:?}"
        );
        for (_, field, _) in SOURCES {
            let own = format!("{field} metrics take target type");
            assert!(messages.iter().any(|m| m.starts_with(&own)), "{own}");
            let target = metrics
                .pointer(&format!("/properties/{field}/properties/target"))
                .unwrap();
            assert_eq!(
                target["x-kubernetes-validations"].as_array().unwrap().len(),
                2,
                "{field}"
            );
        }
    }
}
