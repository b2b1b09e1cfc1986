//! The operator's own Prometheus metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    pub analysis_checks: Family<CheckLabels, Counter>,
    pub alert_deliveries: Family<DeliveryLabels, Counter>,
    /// 1 while this replica holds the leader lease (or runs without leader
    /// election), 0 while it stands by.
    pub leader: Gauge,
    pub api_requests: Family<ApiRequestLabels, Counter>,
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
        Self {
            reconciles,
            reconcile_duration,
            revision_outcomes,
            analysis_value,
            analysis_checks,
            alert_deliveries,
            leader,
            api_requests,
            registry,
        }
    }
}

impl Metrics {
    /// The exposition text for `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
