//! A ceiling on the status, whatever the spec: etcd refuses objects over
//! about 1.5 MiB, and a refused status write would also stop rollbacks
//! (the decision is persisted first). Texts that come from the spec or
//! from measurements are cut with a marker; history entries keep compact
//! check summaries, the newest few only. With the limits below the status
//! stays under `STATUS_CEILING` in the worst case the schema allows
//! (512 KiB, a third of what etcd accepts, leaving room for the spec; `worst_case_status_stays_under_the_ceiling`).

use crate::api::{HistoryEntry, MetricCheck, ModelDeploymentStatus};

/// Appended where a text was cut.
pub const MARKER: &str = "…[truncated]";
/// A message in status (checks, alerts). Analysis messages quote the
/// metric, its value, bound and evidence; the query is what can be long.
const MESSAGE: usize = 1024;
/// A history entry's message (up to 100 of them).
const HISTORY_MESSAGE: usize = 1024;
/// A condition's message (it may name a metric, its bound and query).
const CONDITION: usize = 1024;
/// A query as sent, in `status.analysis`.
const QUERY: usize = 1024;
/// A bound, in `status.analysis`.
const BOUND: usize = 256;
/// A bound, in a history entry's compact check summary.
const HISTORY_BOUND: usize = 256;
/// A check's message, in a history entry's compact check summary.
const HISTORY_CHECK_MESSAGE: usize = 512;
/// History entries (the newest) that keep their check summaries; older
/// ones keep outcome, reason and message (their checks were shown, Evented
/// and alerted when they were decided).
const ENTRIES_WITH_CHECKS: usize = 5;

/// `text` cut to at most `max` bytes (at a character boundary), with
/// `MARKER` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARKER}", &text[..end])
}

fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        *text = truncate(text, max);
    }
}

/// The status with every cap applied.
pub fn bound(mut status: ModelDeploymentStatus) -> ModelDeploymentStatus {
    if let Some(analysis) = status.analysis.as_mut() {
        for check in &mut analysis.metrics {
            cut(&mut check.query, QUERY);
            cut(&mut check.message, MESSAGE);
            cut(&mut check.bound, BOUND);
        }
    }
    let with_checks = status.history.len().saturating_sub(ENTRIES_WITH_CHECKS);
    for (i, entry) in status.history.iter_mut().enumerate() {
        compact_entry(entry, i >= with_checks);
    }
    for alert in &mut status.alerts {
        cut(&mut alert.message, MESSAGE);
    }
    // The planner keeps the outbox this short already (and counts what it
    // drops); this is the ceiling whatever a stored status held.
    let over = status
        .alert_outbox
        .len()
        .saturating_sub(crate::alerts::outbox::MAX_PENDING);
    status.alert_outbox.drain(..over);
    for notification in &mut status.alert_outbox {
        cut(&mut notification.alert.message, MESSAGE);
    }
    for condition in &mut status.conditions {
        cut(&mut condition.message, CONDITION);
    }
    status
}

fn compact_entry(entry: &mut HistoryEntry, keep_checks: bool) {
    cut(&mut entry.message, HISTORY_MESSAGE);
    if !keep_checks {
        entry.analysis.clear();
        return;
    }
    for check in &mut entry.analysis {
        *check = summary(check);
    }
}

/// What a history entry keeps of a check: metric, verdict, value,
/// baseline, bound, a short message and a comparison's evidence (a fixed
/// set of numbers); not the query, its time or the counters.
fn summary(check: &MetricCheck) -> MetricCheck {
    MetricCheck {
        name: check.name.clone(),
        verdict: check.verdict,
        value: check.value,
        baseline: check.baseline,
        bound: truncate(&check.bound, HISTORY_BOUND),
        message: truncate(&check.message, HISTORY_CHECK_MESSAGE),
        evidence: check.evidence.clone(),
        ..MetricCheck::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        AlertChannel, AlertNotification, AlertState, AnalysisStatus, ComparisonEvidence,
        FiringAlert, Outcome, Verdict,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    /// What the status of any ModelDeployment stays under, serialized
    /// (docs/security.md).
    const STATUS_CEILING: usize = 512 * 1024;

    #[test]
    fn truncation_marks_the_cut_and_respects_characters() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(100), 40);
        assert!(cut.len() <= 40 && cut.ends_with(MARKER), "{cut}");
    }

    /// Every field as long as the schema allows: 20 metrics with 4 KiB
    /// queries and long names, 100 history entries, an alert per metric,
    /// and more undelivered notifications than the outbox keeps.
    fn worst_case() -> ModelDeploymentStatus {
        let time = Some(Time(Timestamp::from_second(1_800_000_000).unwrap()));
        let long = "x".repeat(8 * 1024);
        let check = |i: usize| MetricCheck {
            name: format!("{i:0>63}"),
            verdict: Verdict::Inconclusive,
            value: Some(-1.234_567_890_123_456_7e-300),
            baseline: Some(-1.234_567_890_123_456_7e-300),
            bound: long.clone(),
            message: long.clone(),
            query: "q".repeat(4096 + 2048),
            checked_at: time.clone(),
            passed: i32::MAX,
            failed: i32::MAX,
            inconclusive: i32::MAX,
            evidence: Some(ComparisonEvidence {
                samples: i64::MAX,
                stable_samples: i64::MAX,
                min_samples: i64::MAX,
                failures: Some(i64::MAX),
                stable_failures: Some(i64::MAX),
                difference: Some(-1.234_567_890_123_456_7e-300),
                ..ComparisonEvidence::default()
            }),
        };
        let checks: Vec<MetricCheck> = (0..20).map(check).collect();
        let entry = |r: i64| HistoryEntry {
            revision: i64::MAX - r,
            model_version: "v".repeat(63),
            image: "i".repeat(512),
            created_at: time.clone(),
            finished_at: time.clone(),
            outcome: Outcome::RolledBack,
            reason: "ProgressDeadlineExceeded".into(),
            message: long.clone(),
            promoted_at: time.clone(),
            analysis: checks.clone(),
            retry_token: Some("t".repeat(63)),
        };
        let alert = |i: usize| FiringAlert {
            alertname: "ModelAnalysisInconclusive".into(),
            severity: "critical".into(),
            revision: i64::MAX,
            model_version: "v".repeat(63),
            metric: format!("{i:0>63}"),
            reason: "AnalysisInconclusive".into(),
            message: long.clone(),
            since: time.clone(),
        };
        ModelDeploymentStatus {
            alert_outbox: (0..100)
                .map(|i| AlertNotification {
                    state: AlertState::Resolved,
                    alert: alert(i),
                    pending: vec![AlertChannel::Alertmanager, AlertChannel::Webhook],
                    key: "k".repeat(32),
                    decided_at: time.clone(),
                })
                .collect(),
            history: (0..100).map(entry).collect(),
            analysis: Some(AnalysisStatus {
                metrics: checks.clone(),
                ..AnalysisStatus::default()
            }),
            alerts: (0..22).map(alert).collect(),
            conditions: ["Ready", "Progressing", "Degraded"]
                .iter()
                .map(|t| Condition {
                    type_: t.to_string(),
                    status: "True".into(),
                    reason: "MetricBreach".into(),
                    message: long.clone(),
                    observed_generation: Some(i64::MAX),
                    last_transition_time: time.clone().unwrap(),
                })
                .collect(),
            ..ModelDeploymentStatus::default()
        }
    }

    #[test]
    fn worst_case_status_stays_under_the_ceiling() {
        let raw = serde_json::to_vec(&worst_case()).unwrap().len();
        let bounded = bound(worst_case());
        let size = serde_json::to_vec(&bounded).unwrap().len();
        assert!(
            raw > 4 * 1024 * 1024,
            "the case is worst: {raw} bytes unbounded"
        );
        assert!(size < STATUS_CEILING, "{size} bytes");
        eprintln!("worst-case status: {size} bytes (unbounded: {raw})");
        // The newest entries keep their summaries; the query never.
        let newest = bounded.history.last().unwrap();
        assert_eq!(newest.analysis.len(), 20);
        assert!(
            newest
                .analysis
                .iter()
                .all(|c| c.query.is_empty() && c.bound.ends_with(MARKER))
        );
        assert!(bounded.history[0].analysis.is_empty());
        assert!(bounded.analysis.unwrap().metrics[0].query.ends_with(MARKER));
        // The newest notifications stay, cut like the alerts themselves.
        assert_eq!(
            bounded.alert_outbox.len(),
            crate::alerts::outbox::MAX_PENDING
        );
        assert_eq!(
            bounded.alert_outbox.last().unwrap().alert.metric,
            format!("{:0>63}", 99)
        );
        assert!(bounded.alert_outbox[0].alert.message.ends_with(MARKER));
    }

    #[test]
    fn bounding_twice_changes_nothing() {
        let once = bound(worst_case());
        assert_eq!(
            bound(once.clone()),
            once,
            "a converged status is not rewritten"
        );
    }
}
