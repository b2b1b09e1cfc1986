//! The operator's own Prometheus metrics.

mod phases;

pub use phases::Phases;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{FiringAlert, ModelDeployment, ModelDeploymentStatus};

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
pub struct MetricValueLabels {
    pub namespace: String,
    pub modeldeployment: String,
    /// The analysis metric's name from the spec.
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabels {
    pub namespace: String,
    pub modeldeployment: String,
    pub metric: String,
    /// `lower` or `upper`.
    pub bound: String,
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
pub struct FiringLabels {
    pub namespace: String,
    pub modeldeployment: String,
    /// `ModelRolledBack`, `ModelRolloutFailed`, `ModelAnalysisInconclusive`,
    /// `ModelMetricBreach` (src/alerts/desired.rs).
    pub alertname: String,
    pub severity: String,
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
    pub analysis_value: Family<MetricValueLabels, Gauge<f64, AtomicU64>>,
    /// The tightest lower and upper limit each analysed metric was last
    /// checked against (absolute and relative to the baseline).
    pub analysis_bound: Family<BoundLabels, Gauge<f64, AtomicU64>>,
    pub analysis_checks: Family<CheckLabels, Counter>,
    pub alert_deliveries: Family<DeliveryLabels, Counter>,
    /// 1 while this replica holds the leader lease (or runs without leader
    /// election), 0 while it stands by.
    pub leader: Gauge,
    pub api_requests: Family<ApiRequestLabels, Counter>,
    /// 1 for each ModelDeployment's current phase, 0 for the others.
    pub phase: Phases,
    /// 1 per alert firing in a ModelDeployment's status; removed when resolved.
    pub alert_firing: Family<FiringLabels, Gauge>,
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
        let analysis_value = Family::<MetricValueLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "analysis_value",
            "Last value of each analysed metric, per ModelDeployment",
            analysis_value.clone(),
        );
        let analysis_bound = Family::<BoundLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "analysis_bound",
            "Tightest lower/upper limit each analysed metric was last checked against",
            analysis_bound.clone(),
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
        let phase = Phases::default();
        registry.register_collector(Box::new(phase.clone()));
        let alert_firing = Family::<FiringLabels, Gauge>::default();
        registry.register(
            "alert_firing",
            "1 for each alert firing in a ModelDeployment's status",
            alert_firing.clone(),
        );
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
            analysis_value,
            analysis_bound,
            analysis_checks,
            alert_deliveries,
            leader,
            api_requests,
            phase,
            alert_firing,
            registry,
        }
    }
}

impl Metrics {
    /// Mirrors a ModelDeployment's phase and firing alerts (its status as
    /// just derived; `stored`: the one it replaces) into the per-object
    /// gauges.
    pub fn record_state(
        &self,
        namespace: &str,
        name: &str,
        stored: Option<&ModelDeploymentStatus>,
        status: &ModelDeploymentStatus,
    ) {
        self.phase.set(namespace, name, status.phase);
        let firing = |alert: &FiringAlert| FiringLabels {
            namespace: namespace.into(),
            modeldeployment: name.into(),
            alertname: alert.alertname.clone(),
            severity: alert.severity.clone(),
        };
        let now: Vec<FiringLabels> = status.alerts.iter().map(firing).collect();
        for gone in stored.map(|s| s.alerts.as_slice()).unwrap_or_default() {
            let labels = firing(gone);
            if !now.contains(&labels) {
                self.alert_firing.remove(&labels);
            }
        }
        for labels in &now {
            self.alert_firing.get_or_create(labels).set(1);
        }
    }

    /// Drops every series of a deleted ModelDeployment: its phases, firing
    /// alerts and analysed metrics (those its spec and status name).
    pub fn forget(&self, md: &ModelDeployment) {
        let (Some(namespace), Some(name)) = (
            md.metadata.namespace.as_deref(),
            md.metadata.name.as_deref(),
        ) else {
            return;
        };
        self.phase.remove(namespace, name);
        let status = md.status.as_ref();
        for alert in status.map(|s| s.alerts.as_slice()).unwrap_or_default() {
            self.alert_firing.remove(&FiringLabels {
                namespace: namespace.into(),
                modeldeployment: name.into(),
                alertname: alert.alertname.clone(),
                severity: alert.severity.clone(),
            });
        }
        let in_spec = md
            .spec
            .rollout
            .analysis
            .iter()
            .flat_map(|a| a.metrics.iter().map(|m| m.name.clone()));
        let in_status = status
            .and_then(|s| s.analysis.as_ref())
            .into_iter()
            .flat_map(|a| a.metrics.iter().map(|m| m.name.clone()));
        for metric in in_spec.chain(in_status) {
            self.analysis_value.remove(&MetricValueLabels {
                namespace: namespace.into(),
                modeldeployment: name.into(),
                metric: metric.clone(),
            });
            for bound in ["lower", "upper"] {
                self.analysis_bound.remove(&BoundLabels {
                    namespace: namespace.into(),
                    modeldeployment: name.into(),
                    metric: metric.clone(),
                    bound: bound.into(),
                });
            }
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
    use crate::api::Phase;

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
        metrics.record_state("ns", "m", None, &rolled_back);
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
        metrics.record_state("ns", "m", Some(&rolled_back), &healthy);
        let text = metrics.encode();
        assert!(text.contains(
            r#"model_operator_phase{namespace="ns",modeldeployment="m",phase="Healthy"} 1"#
        ));
        assert!(text.contains(
            r#"model_operator_phase{namespace="ns",modeldeployment="m",phase="RolledBack"} 0"#
        ));
        assert!(!text.contains("ModelRolledBack"), "{text}");
    }
}
