//! Every series that names one ModelDeployment, held in one entry per
//! ModelDeployment and expanded only while `/metrics` is scraped:
//!
//! - `model_operator_phase`: one series per phase, 1 for the phase it is in
//!   and 0 for the others, so that a query like `phase{phase="RolledBack"}
//!   == 1` has a series to compare with from the first reconcile on;
//! - `model_operator_alert_firing`: 1 per alert firing in its status;
//! - `model_operator_analysis_value` and `model_operator_analysis_bound`:
//!   the last value of each metric gate and the limits it was checked
//!   against.
//!
//! One entry per object, rather than label `Family`s, for two reasons: a
//! `Family` would keep six label sets and six gauges per model for what is
//! one phase (about 3 MB at 1,000 models); and a series can only be removed
//! from a `Family` by naming its labels again, which a renamed gate or a
//! deleted object no longer does (issue 24: 22 series of a deleted object
//! stayed after 20 renames of its gate). Here the object's entry is the
//! index: dropping it drops everything it had, and gates not in the spec
//! any more are dropped by name from what is held, not from what the spec
//! still says.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::api::Phase;

/// Every phase, in the order their series are written.
const PHASES: [Phase; 6] = [
    Phase::Pending,
    Phase::Progressing,
    Phase::Healthy,
    Phase::RolledBack,
    Phase::Degraded,
    Phase::Paused,
];

/// A metric gate's last judged value and limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gate {
    /// NaN when the round had no value (Prometheus shows NaN, not a stale 0).
    pub value: f64,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// What one ModelDeployment shows on `/metrics`.
#[derive(Debug, Default)]
struct Series {
    /// `None`: no phase derived yet, all six phase series 0.
    phase: Option<Phase>,
    /// (alertname, severity) of each firing alert.
    firing: Vec<(Box<str>, Box<str>)>,
    /// By gate name.
    gates: BTreeMap<Box<str>, Gate>,
}

/// Namespace → name → series: the namespace is held once for all its
/// models, and lookups by `&str` need no allocation.
type ByNamespace = BTreeMap<Box<str>, BTreeMap<Box<str>, Series>>;

/// The per-object series of every ModelDeployment seen, shared with the
/// registry.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    current: Arc<RwLock<ByNamespace>>,
}

impl Objects {
    /// Runs `change` on the object's entry, creating it when missing.
    fn with(&self, namespace: &str, name: &str, change: impl FnOnce(&mut Series)) {
        // A poisoned lock only means a writer panicked mid-insert; the map
        // itself is still a valid map, so keep serving it.
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let models = match current.get_mut(namespace) {
            Some(models) => models,
            None => current.entry(namespace.into()).or_default(),
        };
        match models.get_mut(name) {
            Some(series) => change(series),
            None => change(models.entry(name.into()).or_default()),
        }
    }

    /// Records the phase a ModelDeployment is in.
    pub fn set_phase(&self, namespace: &str, name: &str, phase: Option<Phase>) {
        self.with(namespace, name, |s| s.phase = phase);
    }

    /// Replaces the alerts firing for a ModelDeployment (alertname,
    /// severity): the ones not given any more stop showing.
    pub fn set_firing<'a>(
        &self,
        namespace: &str,
        name: &str,
        firing: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let firing: Vec<_> = firing
            .into_iter()
            .map(|(alert, severity)| (alert.into(), severity.into()))
            .collect();
        self.with(namespace, name, |s| s.firing = firing);
    }

    /// Records a judged gate's value and limits.
    pub fn set_gate(&self, namespace: &str, name: &str, gate: &str, judged: Gate) {
        self.with(namespace, name, |s| match s.gates.get_mut(gate) {
            Some(held) => *held = judged,
            None => {
                s.gates.insert(gate.into(), judged);
            }
        });
    }

    /// Drops the gates the spec no longer has (renamed or removed), so
    /// their series end with the spec that named them.
    pub fn keep_gates(&self, namespace: &str, name: &str, in_spec: &[&str]) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(series) = current.get_mut(namespace).and_then(|m| m.get_mut(name)) {
            series.gates.retain(|gate, _| in_spec.contains(&&**gate));
        }
    }

    /// Drops every series of a deleted ModelDeployment.
    pub fn remove(&self, namespace: &str, name: &str) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(models) = current.get_mut(namespace) {
            models.remove(name);
            if models.is_empty() {
                current.remove(namespace);
            }
        }
    }
}

/// One sample: counts and flags as integers (`1`, as they always were on
/// `/metrics`), measured values as floats.
#[derive(Clone, Copy)]
enum Sample {
    Int(i64),
    Float(f64),
}

/// Writes the samples of one object, each with its own labels.
type Write<'a> = dyn FnMut(&[(&str, &str)], Sample) -> std::fmt::Result + 'a;

/// Writes one family: its descriptor, then `series` of every object.
fn encode_family(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    current: &ByNamespace,
    series: impl Fn(&Series, &mut Write<'_>) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (namespace, models) in current {
        for (model, held) in models {
            let mut write = |labels: &[(&str, &str)], sample: Sample| {
                let all: Vec<(&str, &str)> =
                    [("namespace", &**namespace), ("modeldeployment", &**model)]
                        .into_iter()
                        .chain(labels.iter().copied())
                        .collect();
                let encoder = family.encode_family(&all)?;
                match sample {
                    Sample::Int(v) => ConstGauge::new(v).encode(encoder),
                    Sample::Float(v) => ConstGauge::new(v).encode(encoder),
                }
            };
            series(held, &mut write)?;
        }
    }
    Ok(())
}

impl Collector for Objects {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        let phase = (
            "phase",
            "1 for the phase each ModelDeployment is in, 0 for the others",
        );
        encode_family(&mut encoder, phase, &current, |held, write| {
            for candidate in PHASES {
                let label = candidate.to_string();
                let value = i64::from(held.phase == Some(candidate));
                write(&[("phase", label.as_str())], Sample::Int(value))?;
            }
            Ok(())
        })?;
        let firing = (
            "alert_firing",
            "1 for each alert firing in a ModelDeployment's status",
        );
        encode_family(&mut encoder, firing, &current, |held, write| {
            for (alert, severity) in &held.firing {
                write(
                    &[("alertname", alert), ("severity", severity)],
                    Sample::Int(1),
                )?;
            }
            Ok(())
        })?;
        let value = (
            "analysis_value",
            "Last value of each analysed metric, per ModelDeployment",
        );
        encode_family(&mut encoder, value, &current, |held, write| {
            for (gate, judged) in &held.gates {
                write(&[("metric", gate)], Sample::Float(judged.value))?;
            }
            Ok(())
        })?;
        let bound = (
            "analysis_bound",
            "Tightest lower/upper limit each analysed metric was last checked against",
        );
        encode_family(&mut encoder, bound, &current, |held, write| {
            for (gate, judged) in &held.gates {
                for (bound, limit) in [("lower", judged.lower), ("upper", judged.upper)] {
                    if let Some(limit) = limit {
                        write(&[("metric", gate), ("bound", bound)], Sample::Float(limit))?;
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    fn scrape(objects: &Objects) -> String {
        let mut registry = Registry::with_prefix("model_operator");
        registry.register_collector(Box::new(objects.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    /// Series (not comments) naming `model`.
    fn series_of(text: &str, model: &str) -> Vec<String> {
        let label = format!(r#"modeldeployment="{model}""#);
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&label))
            .map(str::to_string)
            .collect()
    }

    fn gate(value: f64) -> Gate {
        Gate {
            value,
            lower: None,
            upper: Some(0.05),
        }
    }

    #[test]
    fn six_series_per_model_one_of_them_set() {
        let objects = Objects::default();
        objects.set_phase("ns", "m", Some(Phase::Progressing));
        objects.set_phase("ns", "m", Some(Phase::Healthy));
        let text = scrape(&objects);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("model_operator_phase{"))
            .collect();
        assert_eq!(series.len(), 6, "{text}");
        assert!(text.contains("# TYPE model_operator_phase gauge"), "{text}");
        assert!(text.contains(
            r#"model_operator_phase{namespace="ns",modeldeployment="m",phase="Healthy"} 1"#
        ));
        assert_eq!(series.iter().filter(|l| l.ends_with(" 1")).count(), 1);
    }

    #[test]
    fn no_phase_yet_is_six_zeros_and_removal_drops_them() {
        let objects = Objects::default();
        objects.set_phase("ns", "new", None);
        objects.set_phase("other", "m", Some(Phase::Paused));
        let text = scrape(&objects);
        assert_eq!(
            text.lines()
                .filter(|l| l.contains(r#"modeldeployment="new""#) && l.ends_with(" 0"))
                .count(),
            6,
            "{text}"
        );
        objects.remove("ns", "new");
        let text = scrape(&objects);
        assert!(!text.contains(r#"modeldeployment="new""#), "{text}");
        assert!(text.contains(
            r#"model_operator_phase{namespace="other",modeldeployment="m",phase="Paused"} 1"#
        ));
    }

    #[test]
    fn gates_show_value_and_the_bounds_they_have() {
        let objects = Objects::default();
        objects.set_gate("ns", "m", "error-rate", gate(0.01));
        objects.set_gate("ns", "m", "no-data", gate(f64::NAN));
        let text = scrape(&objects);
        for line in [
            r#"model_operator_analysis_value{namespace="ns",modeldeployment="m",metric="error-rate"} 0.01"#,
            r#"model_operator_analysis_value{namespace="ns",modeldeployment="m",metric="no-data"} NaN"#,
            r#"model_operator_analysis_bound{namespace="ns",modeldeployment="m",metric="error-rate",bound="upper"} 0.05"#,
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains(r#"bound="lower""#), "{text}");
    }

    /// Issue 24: a gate renamed 20 times, then the object deleted.
    #[test]
    fn renamed_gates_and_deleted_objects_leave_no_series() {
        let objects = Objects::default();
        objects.set_phase("ns", "bystander", Some(Phase::Healthy));
        objects.set_gate("ns", "bystander", "error-rate", gate(0.01));
        objects.set_phase("ns", "m", Some(Phase::Progressing));
        for i in 0..20 {
            let name = format!("gate-{i}");
            objects.keep_gates("ns", "m", &[&name]);
            objects.set_gate("ns", "m", &name, gate(0.01));
            objects.set_firing("ns", "m", [(name.as_str(), "warning")]);
        }
        let text = scrape(&objects);
        let held = series_of(&text, "m");
        // 6 phases, and the last gate's value, bound and alert.
        assert_eq!(held.len(), 9, "{held:#?}");
        assert!(held.iter().all(|l| !l.contains("gate-18")), "{held:#?}");

        objects.remove("ns", "m");
        let text = scrape(&objects);
        assert_eq!(series_of(&text, "m"), Vec::<String>::new());
        assert_eq!(series_of(&text, "bystander").len(), 8, "{text}");
    }

    #[test]
    fn firing_alerts_are_replaced_whole() {
        let objects = Objects::default();
        objects.set_firing("ns", "m", [("ModelRolledBack", "warning")]);
        let text = scrape(&objects);
        assert!(text.contains(
            r#"model_operator_alert_firing{namespace="ns",modeldeployment="m",alertname="ModelRolledBack",severity="warning"} 1"#
        ), "{text}");
        objects.set_firing("ns", "m", []);
        assert!(!scrape(&objects).contains("alert_firing{"));
    }
}
