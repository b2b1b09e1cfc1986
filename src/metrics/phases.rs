//! `model_operator_phase`: one series per phase per ModelDeployment, 1 for
//! the phase it is in and 0 for the others, so that a query like
//! `phase{phase="RolledBack"} == 1` has a series to compare with from the
//! first reconcile on.
//!
//! Held as one entry per ModelDeployment and expanded into its six series
//! only while `/metrics` is scraped: a label `Family` would keep six label
//! sets and six gauges per model (about 3 MB at 1,000 models) for what is
//! one phase.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
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

/// Namespace → name → phase: the namespace is held once for all its
/// models, and lookups by `&str` need no allocation.
type ByNamespace = BTreeMap<Box<str>, BTreeMap<Box<str>, Option<Phase>>>;

/// The phase of every ModelDeployment seen, shared with the registry.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    current: Arc<RwLock<ByNamespace>>,
}

impl Phases {
    /// Records the phase a ModelDeployment is in (`None`: none derived yet,
    /// all six series 0).
    pub fn set(&self, namespace: &str, name: &str, phase: Option<Phase>) {
        // A poisoned lock only means a writer panicked mid-insert; the map
        // itself is still a valid map, so keep serving it.
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let models = match current.get_mut(namespace) {
            Some(models) => models,
            None => current.entry(namespace.into()).or_default(),
        };
        match models.get_mut(name) {
            Some(stored) => *stored = phase,
            None => {
                models.insert(name.into(), phase);
            }
        }
    }

    /// Drops a deleted ModelDeployment's series.
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

impl Collector for Phases {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "phase",
            "1 for the phase each ModelDeployment is in, 0 for the others",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        let models = current
            .iter()
            .flat_map(|(namespace, models)| models.iter().map(move |m| (namespace, m)));
        for (namespace, (name, phase)) in models {
            for candidate in PHASES {
                let label = candidate.to_string();
                let labels = [
                    ("namespace", &**namespace),
                    ("modeldeployment", &**name),
                    ("phase", label.as_str()),
                ];
                let value = ConstGauge::new(i64::from(*phase == Some(candidate)));
                value.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    fn scrape(phases: &Phases) -> String {
        let mut registry = Registry::with_prefix("model_operator");
        registry.register_collector(Box::new(phases.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn six_series_per_model_one_of_them_set() {
        let phases = Phases::default();
        phases.set("ns", "m", Some(Phase::Progressing));
        phases.set("ns", "m", Some(Phase::Healthy));
        let text = scrape(&phases);
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
        let phases = Phases::default();
        phases.set("ns", "new", None);
        phases.set("other", "m", Some(Phase::Paused));
        let text = scrape(&phases);
        assert_eq!(
            text.lines()
                .filter(|l| l.contains(r#"modeldeployment="new""#) && l.ends_with(" 0"))
                .count(),
            6,
            "{text}"
        );
        phases.remove("ns", "new");
        let text = scrape(&phases);
        assert!(!text.contains(r#"modeldeployment="new""#), "{text}");
        assert!(text.contains(
            r#"model_operator_phase{namespace="other",modeldeployment="m",phase="Paused"} 1"#
        ));
    }
}
