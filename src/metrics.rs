//! The operator's own Prometheus metrics.

mod objects;

pub use objects::{Gate, Objects};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{ModelDeployment, ModelDeploymentStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `ok`, or the error kind (`api`, `conflict`, `rejected`, …).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    /// `Stable`, `RolledBack` or `Failed`.
    pub outcome: String,
    /// CamelCase cause, e.g. `CrashLoopBackOff`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// Pass, Fail or Inconclusive.
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// alertmanager or webhook.
    pub channel: String,
    /// ok or error.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// What is held: a cache (`cached_deployments`, …) or per-object state
    /// (`analysis_rounds`, `alert_delivery`, …).
    pub kind: String,
    /// The watched namespace, or `all` (caches are per scope; state shared
    /// by every scope is reported under each).
    pub scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// Kubernetes verb: `get`, `list`, `watch`, `create`, `patch`, …
    pub verb: String,
    /// Plural resource, with `/subresource` (e.g. `modeldeployments/status`).
    pub resource: String,
}

/// Counters and histograms, registered under the `model_operator` prefix.
pub struct Metrics {
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub revision_outcomes: Family<RevisionLabels, Counter>,
    pub analysis_checks: Family<CheckLabels, Counter>,
    pub alert_deliveries: Family<DeliveryLabels, Counter>,
    /// 1 while this replica holds the leader lease (or runs without leader
    /// election), 0 while it stands by.
    pub leader: Gauge,
    pub api_requests: Family<ApiRequestLabels, Counter>,
    /// Every series that names one ModelDeployment: its phase, firing
    /// alerts, and each gate's last value and the limits it was checked
    /// against (absolute and relative to the baseline).
    pub objects: Objects,
    /// ModelDeployments this binary could not decode (each version once):
    /// skipped, logged and Evented, never a stop of the watch.
    pub undecodable: Counter,
    /// Entries held in memory, by kind: every cache and every per-object
    /// map, so that what a deleted ModelDeployment leaves behind shows.
    pub state_entries: Family<StateLabels, Gauge>,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("model_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by outcome", reconciles.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        let revision_outcomes = Family::<RevisionLabels, Counter>::default();
        registry.register(
            "revision_outcomes",
            "Revisions that ended a rollout, by outcome and reason",
            revision_outcomes.clone(),
        );
        let analysis_checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "analysis_checks",
            "Metric checks by verdict",
            analysis_checks.clone(),
        );
        let alert_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "alert_deliveries",
            "Alert deliveries by channel and result",
            alert_deliveries.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the one that reconciles",
            leader.clone(),
        );
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server, by verb and resource (counted when sent)",
            api_requests.clone(),
        );
        let objects = Objects::default();
        registry.register_collector(Box::new(objects.clone()));
        let undecodable = Counter::default();
        registry.register(
            "undecodable_objects",
            "ModelDeployment versions this operator could not decode and skipped",
            undecodable.clone(),
        );
        let state_entries = Family::<StateLabels, Gauge>::default();
        registry.register(
            "state_entries",
            "Entries held in memory, by kind (caches and per-object state)",
            state_entries.clone(),
        );
        Self {
            state_entries,
            undecodable,
            reconciles,
            reconcile_duration,
            revision_outcomes,
            analysis_checks,
            alert_deliveries,
            leader,
            api_requests,
            objects,
            registry,
        }
    }
}

impl Metrics {
    /// Mirrors a ModelDeployment's phase and firing alerts (its status as
    /// just derived) into its series, and drops the series of gates its
    /// spec no longer has (`gates`: those it has).
    pub fn record_state(
        &self,
        namespace: &str,
        name: &str,
        status: &ModelDeploymentStatus,
        gates: &[&str],
    ) {
        self.objects.set_phase(namespace, name, status.phase);
        let firing = status
            .alerts
            .iter()
            .map(|a| (a.alertname.as_str(), a.severity.as_str()));
        self.objects.set_firing(namespace, name, firing);
        self.objects.keep_gates(namespace, name, gates);
    }

    /// Drops every series of a deleted ModelDeployment, whatever its spec
    /// and status say now: what is dropped is what was recorded.
    pub fn forget(&self, md: &ModelDeployment) {
        if let (Some(namespace), Some(name)) = (
            md.metadata.namespace.as_deref(),
            md.metadata.name.as_deref(),
        ) {
            self.objects.remove(namespace, name);
        }
    }

    /// The exposition text for `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FiringAlert, Phase};

    fn alert(alertname: &str) -> FiringAlert {
        FiringAlert {
            alertname: alertname.into(),
            severity: "warning".into(),
            ..FiringAlert::default()
        }
    }

    fn status(phase: Phase, alerts: Vec<FiringAlert>) -> ModelDeploymentStatus {
        ModelDeploymentStatus {
            phase: Some(phase),
            alerts,
            ..ModelDeploymentStatus::default()
        }
    }

    #[test]
    fn phase_and_firing_alerts_follow_status() {
        let metrics = Metrics::default();
        let rolled_back = status(Phase::RolledBack, vec![alert("ModelRolledBack")]);
        metrics.record_state("ns", "m", &rolled_back, &[]);
        let text = metrics.encode();
        assert!(text.contains(
            r#"model_operator_phase{namespace="ns",modeldeployment="m",phase="RolledBack"} 1"#
        ));
        assert!(text.contains(
            r#"model_operator_phase{namespace="ns",modeldeployment="m",phase="Healthy"} 0"#
        ));
        assert!(text.contains(
            r#"model_operator_alert_firing{namespace="ns",modeldeployment="m",alertname="ModelRolledBack",severity="warning"} 1"#
        ));

        let healthy = status(Phase::Healthy, vec![]);
        metrics.record_state("ns", "m", &healthy, &[]);
        let text = metrics.encode();
        assert!(text.contains(
            r#"model_operator_phase{namespace="ns",modeldeployment="m",phase="Healthy"} 1"#
        ));
        assert!(text.contains(
            r#"model_operator_phase{namespace="ns",modeldeployment="m",phase="RolledBack"} 0"#
        ));
        assert!(!text.contains("ModelRolledBack"), "{text}");
    }

    /// Issue 24: the spec the object is deleted with names none of the
    /// gates it had before; every series goes all the same.
    #[test]
    fn a_deleted_object_takes_the_series_of_its_renamed_gates() {
        let metrics = Metrics::default();
        let judged = Gate {
            value: 0.01,
            lower: None,
            upper: Some(0.05),
        };
        let state = status(Phase::Progressing, vec![alert("ModelRolledBack")]);
        for i in 0..20 {
            let gate = format!("gate-{i}");
            metrics.objects.set_gate("ns", "m", &gate, judged);
            metrics.record_state("ns", "m", &state, &[&gate]);
            let text = metrics.encode();
            let values = text
                .lines()
                .filter(|l| l.starts_with("model_operator_analysis_value{"))
                .count();
            assert_eq!(values, 1, "only the gate in the spec shows:\n{text}");
        }
        let md: ModelDeployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {"model": {"version": "1"}, "server": {"image": "i"}},
        }))
        .unwrap();
        metrics.forget(&md);
        let text = metrics.encode();
        assert!(!text.contains(r#"modeldeployment="m""#), "{text}");
    }
}
