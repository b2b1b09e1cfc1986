//! `model_operator_state_entries{kind, scope}`: how many entries each cache
//! and each per-object map holds, sampled every few seconds. What a deleted
//! ModelDeployment leaves behind in memory shows here as a count that does
//! not come back down (tests/tenancy_cleanup.rs).

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{Metrics, StateLabels};

const EVERY: Duration = Duration::from_secs(2);

/// One kind of entries and how to count them now.
pub type Counter = (&'static str, Box<dyn Fn() -> usize + Send + Sync>);

/// Samples `counters` into the gauge until dropped (the caller aborts it
/// with its scope).
pub async fn sample(metrics: Arc<Metrics>, scope: String, counters: Vec<Counter>) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        for (kind, count) in &counters {
            let labels = StateLabels {
                kind: (*kind).to_string(),
                scope: scope.clone(),
            };
            let n = i64::try_from(count()).unwrap_or(i64::MAX);
            metrics.state_entries.get_or_create(&labels).set(n);
        }
    }
}
