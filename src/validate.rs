//! Checks the API server cannot make at `kubectl apply` time. The CRD's
//! schema and CEL rules refuse most bad input; what is left (label syntax in
//! free-form maps, whose keys CEL cannot bound cheaply) is caught here and
//! reported as `Degraded=True, reason InvalidSpec` without touching what runs.
//! Anything that still slips through is refused by the API server when the
//! child is applied, and reported the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::analysis::duration;
use crate::analysis::template::{self, Vars};
use crate::api::{AnalysisSpec, CanarySpec, ModelDeploymentSpec, RolloutStrategy};
use crate::resources::Platform;
use crate::resources::storage;
use crate::rollout::canary::Step;

/// What the reconcile uses of a spec beyond its plain fields, parsed once
/// here: nothing later re-parses the spec or falls back to a default.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// `spec.rollout.analysis`'s durations, when analysis is configured.
    pub analysis: Option<Timing>,
    /// The canary's steps, when the strategy is Canary.
    pub canary: Option<Vec<Step>>,
}

/// The analysis' durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub bake_time: Duration,
    /// `spec.rollout.analysis.window`: `None` for the default (since the
    /// revision started serving, capped).
    pub window: Option<Duration>,
}

/// The spec as the reconcile uses it, or the first problem found, as a
/// sentence for a person.
pub fn spec(spec: &ModelDeploymentSpec) -> Result<Validated, String> {
    if let Some(meta) = &spec.pod_metadata {
        labels("spec.podMetadata.labels", meta.labels.as_ref())?;
        if let Some(annotations) = &meta.annotations {
            for key in annotations.keys() {
                qualified_name(key)
                    .map_err(|why| format!("spec.podMetadata.annotations: key {key:?} {why}"))?;
            }
        }
    }
    labels(
        "spec.server.nodeSelector",
        spec.server.node_selector.as_ref(),
    )?;
    let analysis = spec
        .rollout
        .analysis
        .as_ref()
        .map(analysis_spec)
        .transpose()?;
    let canary = match spec.rollout.strategy {
        RolloutStrategy::Canary => Some(canary_steps(spec.rollout.canary.as_ref())?),
        RolloutStrategy::RollingUpdate => None,
    };
    Ok(Validated { analysis, canary })
}

/// What the spec needs of the platform's settings: a download needs the
/// admin's storage-initializer image (`--model-fetch-image`).
pub fn platform(spec: &ModelDeploymentSpec, platform: &Platform) -> Result<(), String> {
    let downloads = spec.model.storage.is_some()
        && spec
            .model
            .uri
            .as_deref()
            .is_some_and(|uri| storage::source(uri) == storage::Source::Download);
    if downloads && platform.fetch_image.is_none() {
        return Err(format!(
            "spec.model.storage: downloading {} needs the platform's storage initializer, and this operator has none configured (chart value modelFetch.image, flag --model-fetch-image); use a pvc:// URI or ask the cluster's admin",
            spec.model.uri.as_deref().unwrap_or_default()
        ));
    }
    Ok(())
}

/// The steps as typed values. The CRD already refuses an empty plan, a
/// weight outside 0–100 and a malformed duration; this parses them once.
fn canary_steps(canary: Option<&CanarySpec>) -> Result<Vec<Step>, String> {
    let canary =
        canary.ok_or("spec.rollout.strategy is Canary but spec.rollout.canary is missing")?;
    if canary.steps.is_empty() {
        return Err("spec.rollout.canary.steps must not be empty".into());
    }
    if let Some(window) = canary.warm_rollback_window.as_deref() {
        duration::parse(window)
            .map_err(|why| format!("spec.rollout.canary.warmRollbackWindow: {why}"))?;
    }
    canary
        .steps
        .iter()
        .enumerate()
        .map(|(n, step)| match (step.set_weight, &step.pause) {
            (Some(w), None) if (0..=100).contains(&w) => Ok(Step::SetWeight(w)),
            (None, Some(pause)) => pause
                .duration
                .as_deref()
                .map(duration::parse)
                .transpose()
                .map(Step::Pause)
                .map_err(|why| format!("spec.rollout.canary.steps[{n}].pause.duration: {why}")),
            _ => Err(format!(
                "spec.rollout.canary.steps[{n}] must be setWeight (0 to 100) or pause"
            )),
        })
        .collect()
}

/// Durations and query templates: the CRD checks their shape, this checks
/// they mean something (a typo in a variable would query the wrong series).
fn analysis_spec(analysis: &AnalysisSpec) -> Result<Timing, String> {
    let interval = duration::parse(&analysis.interval)
        .map_err(|why| format!("spec.rollout.analysis.interval: {why}"))?;
    let bake_time = duration::parse(&analysis.bake_time)
        .map_err(|why| format!("spec.rollout.analysis.bakeTime: {why}"))?;
    let sample = Vars {
        namespace: "ns",
        name: "name",
        model: "model",
        version: "1",
        revision: 1,
        window: "1m",
    };
    let window = analysis
        .window
        .as_deref()
        .map(duration::parse)
        .transpose()
        .map_err(|why| format!("spec.rollout.analysis.window: {why}"))?;
    for metric in &analysis.metrics {
        let comparison = metric.comparison.as_ref();
        let queries = [
            ("query", metric.query.as_ref()),
            (
                "comparison.failures",
                comparison.and_then(|c| c.failures.as_ref()),
            ),
            (
                "comparison.total",
                comparison.and_then(|c| c.total.as_ref()),
            ),
            (
                "comparison.buckets",
                comparison.and_then(|c| c.buckets.as_ref()),
            ),
        ];
        for (field, query) in queries {
            if let Some(query) = query {
                template::render(query, &sample).map_err(|why| {
                    format!(
                        "spec.rollout.analysis.metrics[{}].{field}: {why}",
                        metric.name
                    )
                })?;
            }
        }
        if let Some(margin) = comparison.and_then(|c| c.margin.as_ref()) {
            crate::analysis::comparison::parse_margin(margin).map_err(|why| {
                format!(
                    "spec.rollout.analysis.metrics[{}].comparison.margin: {why}",
                    metric.name
                )
            })?;
        }
    }
    Ok(Timing {
        interval,
        bake_time,
        window,
    })
}

fn labels(field: &str, labels: Option<&BTreeMap<String, String>>) -> Result<(), String> {
    for (key, value) in labels.into_iter().flatten() {
        qualified_name(key).map_err(|why| format!("{field}: key {key:?} {why}"))?;
        label_value(value).map_err(|why| format!("{field}: value {value:?} of {key:?} {why}"))?;
    }
    Ok(())
}

/// `[prefix/]name`: prefix a DNS subdomain, name at most 63 characters.
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns_subdomain(prefix).map_err(|why| format!("has an invalid prefix: {why}"))?;
    }
    if name.is_empty() {
        return Err("has an empty name part".into());
    }
    label_value(name)
}

/// At most 63 characters: alphanumerics, '-', '_', '.', starting and ending
/// alphanumeric (or empty).
fn label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("is longer than 63 characters".into());
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let bounded_by_alnum = alnum(value.chars().next()) && alnum(value.chars().last());
    if !value.is_empty() && !bounded_by_alnum {
        return Err("must start and end with a letter or digit".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains {c:?}; only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    Ok(())
}

fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    for part in s.split('.') {
        let ok = !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !part.starts_with('-')
            && !part.ends_with('-');
        if !ok {
            return Err(format!("{s:?} is not a lowercase DNS name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use serde_json::json;

    fn spec_with(extra: serde_json::Value) -> ModelDeploymentSpec {
        fixtures::md().image("i").spec(extra).build().spec
    }

    #[test]
    fn table() {
        let cases = [
            ("nothing extra", json!({}), None),
            (
                "good labels",
                json!({"podMetadata": {"labels": {"team": "fraud", "example.com/tier": "gold", "empty": ""}}}),
                None,
            ),
            (
                "good annotations",
                json!({"podMetadata": {"annotations": {"prometheus.io/scrape": "true", "note": "any text at all!"}}}),
                None,
            ),
            (
                "label value with space",
                json!({"podMetadata": {"labels": {"team": "fraud team"}}}),
                Some("spec.podMetadata.labels: value \"fraud team\" of \"team\" contains ' '"),
            ),
            (
                "label key with bad prefix",
                json!({"podMetadata": {"labels": {"Example.com/x": "y"}}}),
                Some("invalid prefix"),
            ),
            (
                "label key too long",
                json!({"podMetadata": {"labels": {"k".repeat(64): "y"}}}),
                Some("longer than 63"),
            ),
            (
                "label value ends with dash",
                json!({"podMetadata": {"labels": {"k": "v-"}}}),
                Some("start and end"),
            ),
            (
                "annotation key empty name",
                json!({"podMetadata": {"annotations": {"example.com/": "y"}}}),
                Some("empty name"),
            ),
            (
                "node selector",
                json!({"server": {"image": "i", "nodeSelector": {"gpu type": "a100"}}}),
                Some("spec.server.nodeSelector"),
            ),
            (
                "analysis with known variables",
                json!({"rollout": {"analysis": {"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "e", "query": "m{v=\"{{ version }}\",r=\"{{revision}}\"}", "max": 1.0}]}}}),
                None,
            ),
            (
                "analysis query with an unknown variable",
                json!({"rollout": {"analysis": {"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "e", "query": "m{v=\"{{versoin}}\"}", "max": 1.0}]}}}),
                Some("spec.rollout.analysis.metrics[e].query: unknown variable {{versoin}}"),
            ),
            (
                "analysis interval that is no duration",
                json!({"rollout": {"analysis": {"prometheus": {"address": "http://p:9090"}, "interval": "soon", "metrics": [{"name": "e", "query": "up", "max": 1.0}]}}}),
                Some("spec.rollout.analysis.interval"),
            ),
            (
                "comparison queries with known variables",
                json!({"rollout": {"analysis": {"prometheus": {"address": "http://p:9090"}, "window": "10m", "metrics": [
                    {"name": "e", "comparison": {"test": "TwoProportions", "failures": "sum(increase(f{v=\"{{version}}\"}[{{window}}]))", "total": "sum(increase(t{v=\"{{version}}\"}[{{ window }}]))", "margin": "10%"}},
                    {"name": "l", "comparison": {"test": "MannWhitney", "buckets": "sum by (le) (increase(b{v=\"{{version}}\"}[{{window}}]))"}}]}}}),
                None,
            ),
            (
                "comparison query with an unknown variable",
                json!({"rollout": {"analysis": {"prometheus": {"address": "http://p:9090"}, "metrics": [
                    {"name": "e", "comparison": {"test": "TwoProportions", "failures": "f", "total": "t[{{windwo}}]", "margin": "10%"}}]}}}),
                Some(
                    "spec.rollout.analysis.metrics[e].comparison.total: unknown variable {{windwo}}",
                ),
            ),
        ];
        for (name, extra, want) in cases {
            let got = spec(&spec_with(extra));
            match want {
                None => assert!(got.is_ok(), "{name}: {got:?}"),
                Some(fragment) => {
                    let err = got.expect_err(name);
                    assert!(err.contains(fragment), "{name}: {err:?} lacks {fragment:?}");
                }
            }
        }
    }

    #[test]
    fn analysis_durations_are_parsed_once_with_their_defaults() {
        let analysis = |extra: serde_json::Value| {
            let mut a = json!({"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "e", "query": "up", "max": 1.0}]});
            a.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            spec(&spec_with(json!({"rollout": {"analysis": a}})))
                .unwrap()
                .analysis
        };
        assert_eq!(
            analysis(json!({})),
            Some(Timing {
                interval: Duration::from_secs(30),
                bake_time: Duration::from_secs(120),
                window: None,
            })
        );
        assert_eq!(
            analysis(json!({"interval": "1m30s", "bakeTime": "0s", "window": "10m"})),
            Some(Timing {
                interval: Duration::from_secs(90),
                bake_time: Duration::ZERO,
                window: Some(Duration::from_secs(600)),
            })
        );
        assert_eq!(spec(&spec_with(json!({}))).unwrap().analysis, None);
    }

    #[test]
    fn canary_steps_are_parsed_once() {
        let canary = |canary: serde_json::Value| {
            spec(&spec_with(
                json!({"rollout": {"strategy": "Canary", "canary": canary}}),
            ))
        };
        let parsed = canary(json!({"steps": [
            {"setWeight": 10}, {"pause": {"duration": "1m30s"}}, {"pause": {}},
        ]}))
        .unwrap();
        assert_eq!(
            parsed.canary,
            Some(vec![
                Step::SetWeight(10),
                Step::Pause(Some(Duration::from_secs(90))),
                Step::Pause(None),
            ])
        );
        let routed = canary(json!({
            "steps": [{"setWeight": 10}],
            "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
        }));
        assert_eq!(routed.unwrap().canary, Some(vec![Step::SetWeight(10)]));
        assert_eq!(spec(&spec_with(json!({}))).unwrap().canary, None);
    }
}
