//! Which alerts a ModelDeployment's state raises. Level-triggered: the set is
//! a function of status, and what changed since the stored set is what gets
//! sent (firing) or resolved.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AnalysisPhase, AnalysisStatus, FiringAlert, HistoryEntry, Outcome, Verdict};
use crate::reasons;

pub const ROLLED_BACK: &str = "ModelRolledBack";
pub const ROLLOUT_FAILED: &str = "ModelRolloutFailed";
pub const ANALYSIS_INCONCLUSIVE: &str = "ModelAnalysisInconclusive";
pub const METRIC_BREACH: &str = "ModelMetricBreach";

/// The state alerts are derived from.
pub struct Facts<'a> {
    pub requested: Option<i64>,
    pub current: Option<i64>,
    pub history: &'a [HistoryEntry],
    pub analysis: Option<&'a AnalysisStatus>,
    /// `analysis.failureLimit`, for post-promotion breaches.
    pub failure_limit: i32,
}

pub fn desired(state: &Facts<'_>) -> Vec<FiringAlert> {
    let mut alerts: Vec<FiringAlert> = failed_rollout(state).into_iter().collect();
    alerts.extend(analysis_alerts(state));
    alerts
}

fn entry<'a>(state: &Facts<'a>, revision: i64) -> Option<&'a HistoryEntry> {
    state.history.iter().find(|e| e.revision == revision)
}

/// The requested revision rolled back, or failed with nothing to go back to.
fn failed_rollout(state: &Facts<'_>) -> Option<FiringAlert> {
    let failed = state.requested.and_then(|r| entry(state, r))?;
    let rolled_back = failed.outcome == Outcome::RolledBack && state.current != state.requested;
    if !rolled_back && failed.outcome != Outcome::Failed {
        return None;
    }
    let metric = failed
        .analysis
        .iter()
        .find(|m| m.verdict == Verdict::Fail)
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let (alertname, severity, what) = if rolled_back {
        let to = state
            .current
            .map_or_else(String::new, |c| format!(", serving revision {c}"));
        (ROLLED_BACK, "warning", format!("rolled back{to}"))
    } else {
        (
            ROLLOUT_FAILED,
            "critical",
            "failed with nothing to roll back to".to_string(),
        )
    };
    Some(FiringAlert {
        alertname: alertname.into(),
        severity: severity.into(),
        revision: failed.revision,
        model_version: failed.model_version.clone(),
        metric,
        reason: failed.reason.clone(),
        message: format!(
            "revision {} (model {}) {what}: {}",
            failed.revision, failed.model_version, failed.message
        ),
        since: None,
    })
}

/// The running revision's analysis stopped for lack of answers, or the
/// guarded Stable revision breaches its gates.
fn analysis_alerts(state: &Facts<'_>) -> Vec<FiringAlert> {
    let Some(analysis) = state.analysis.filter(|a| Some(a.revision) == state.current) else {
        return Vec::new();
    };
    let version = entry(state, analysis.revision)
        .map(|e| e.model_version.clone())
        .unwrap_or_default();
    match analysis.phase {
        AnalysisPhase::Inconclusive => vec![FiringAlert {
            alertname: ANALYSIS_INCONCLUSIVE.into(),
            severity: "warning".into(),
            revision: analysis.revision,
            model_version: version,
            metric: analysis
                .metrics
                .iter()
                .find(|m| m.verdict == Verdict::Inconclusive)
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            reason: reasons::ANALYSIS_INCONCLUSIVE.into(),
            message: analysis.message.clone(),
            since: None,
        }],
        AnalysisPhase::Guarding => analysis
            .metrics
            .iter()
            .filter(|m| m.failed > state.failure_limit)
            .map(|m| FiringAlert {
                alertname: METRIC_BREACH.into(),
                severity: "critical".into(),
                revision: analysis.revision,
                model_version: version.clone(),
                metric: m.name.clone(),
                reason: reasons::POST_PROMOTION_BREACH.into(),
                message: format!(
                    "stable revision {} breaches metric {}: {}; bound {}; query: {}",
                    analysis.revision, m.name, m.message, m.bound, m.query
                ),
                since: None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What changed between the stored alerts and the desired ones.
#[derive(Debug, Default, PartialEq)]
pub struct Transition {
    /// Newly firing: a firing notification goes into the outbox.
    pub firing: Vec<FiringAlert>,
    /// No longer firing: a resolved notification goes into the outbox.
    pub resolved: Vec<FiringAlert>,
    /// What status stores from now on.
    pub next: Vec<FiringAlert>,
}

pub fn transition(stored: &[FiringAlert], desired: Vec<FiringAlert>, now: &Time) -> Transition {
    let mut t = Transition::default();
    for mut alert in desired {
        match stored.iter().find(|s| s.same_alert(&alert)) {
            Some(old) => alert.since = old.since.clone(),
            None => {
                alert.since = Some(now.clone());
                t.firing.push(alert.clone());
            }
        }
        t.next.push(alert);
    }
    t.resolved = stored
        .iter()
        .filter(|s| !t.next.iter().any(|n| n.same_alert(s)))
        .cloned()
        .collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MetricCheck;
    use k8s_openapi::jiff::Timestamp;

    fn entry(revision: i64, outcome: Outcome, reason: &str) -> HistoryEntry {
        HistoryEntry {
            revision,
            model_version: format!("{revision}.0"),
            outcome,
            reason: reason.into(),
            message: "why".into(),
            ..HistoryEntry::default()
        }
    }

    fn check(name: &str, verdict: Verdict, failed: i32) -> MetricCheck {
        MetricCheck {
            name: name.into(),
            verdict,
            failed,
            ..MetricCheck::default()
        }
    }

    fn names(alerts: &[FiringAlert]) -> Vec<(String, i64, String)> {
        alerts
            .iter()
            .map(|a| (a.alertname.clone(), a.revision, a.metric.clone()))
            .collect()
    }

    #[test]
    fn table() {
        let mut metric_failure = entry(2, Outcome::RolledBack, "AnalysisFailed");
        metric_failure.analysis = vec![
            check("accuracy", Verdict::Pass, 0),
            check("error-rate", Verdict::Fail, 2),
        ];
        let healthy = [entry(1, Outcome::Stable, "RolloutComplete")];
        let guard = |metrics| AnalysisStatus {
            revision: 1,
            phase: AnalysisPhase::Guarding,
            metrics,
            ..AnalysisStatus::default()
        };
        let halted = AnalysisStatus {
            revision: 2,
            phase: AnalysisPhase::Inconclusive,
            metrics: vec![check("error-rate", Verdict::Inconclusive, 0)],
            ..AnalysisStatus::default()
        };
        let in_bounds = guard(vec![check("error-rate", Verdict::Fail, 1)]);
        let breach = guard(vec![
            check("error-rate", Verdict::Fail, 2),
            check("latency", Verdict::Pass, 0),
        ]);
        let history = |e: HistoryEntry| vec![entry(1, Outcome::Stable, "RolloutComplete"), e];
        let crash = history(entry(2, Outcome::RolledBack, "CrashLoopBackOff"));
        let metric = history(metric_failure.clone());
        let failed = vec![entry(1, Outcome::Failed, "ImagePullFailed")];
        let progressing = history(entry(2, Outcome::Progressing, "RolloutStarted"));
        type Case<'a> = (&'a str, Facts<'a>, Vec<(&'a str, i64, &'a str)>);
        let cases: Vec<Case<'_>> = vec![
            (
                "healthy: nothing",
                Facts {
                    requested: Some(1),
                    current: Some(1),
                    history: &healthy,
                    analysis: None,
                    failure_limit: 1,
                },
                vec![],
            ),
            (
                "health rollback",
                Facts {
                    requested: Some(2),
                    current: Some(1),
                    history: &crash,
                    analysis: None,
                    failure_limit: 1,
                },
                vec![(ROLLED_BACK, 2, "")],
            ),
            (
                "metric rollback names the metric",
                Facts {
                    requested: Some(2),
                    current: Some(1),
                    history: &metric,
                    analysis: None,
                    failure_limit: 1,
                },
                vec![(ROLLED_BACK, 2, "error-rate")],
            ),
            (
                "rolled back version asked again and running: resolved",
                Facts {
                    requested: Some(2),
                    current: Some(2),
                    history: &crash,
                    analysis: None,
                    failure_limit: 1,
                },
                vec![],
            ),
            (
                "failed without rollback",
                Facts {
                    requested: Some(1),
                    current: Some(1),
                    history: &failed,
                    analysis: None,
                    failure_limit: 1,
                },
                vec![(ROLLOUT_FAILED, 1, "")],
            ),
            (
                "stopped analysis",
                Facts {
                    requested: Some(2),
                    current: Some(2),
                    history: &progressing,
                    analysis: Some(&halted),
                    failure_limit: 1,
                },
                vec![(ANALYSIS_INCONCLUSIVE, 2, "error-rate")],
            ),
            (
                "guard within failure limit",
                Facts {
                    requested: Some(1),
                    current: Some(1),
                    history: &healthy,
                    analysis: Some(&in_bounds),
                    failure_limit: 1,
                },
                vec![],
            ),
            (
                "guard breach per metric",
                Facts {
                    requested: Some(1),
                    current: Some(1),
                    history: &healthy,
                    analysis: Some(&breach),
                    failure_limit: 1,
                },
                vec![(METRIC_BREACH, 1, "error-rate")],
            ),
            (
                "an analysis of another revision raises nothing",
                Facts {
                    requested: Some(1),
                    current: Some(1),
                    history: &healthy,
                    analysis: Some(&halted),
                    failure_limit: 1,
                },
                vec![],
            ),
        ];
        for (name, state, want) in cases {
            let want: Vec<(String, i64, String)> = want
                .into_iter()
                .map(|(a, r, m)| (a.to_string(), r, m.to_string()))
                .collect();
            assert_eq!(names(&desired(&state)), want, "{name}");
        }
    }

    #[test]
    fn transitions_keep_since_and_resolve_what_cleared() {
        let t0 = Time(Timestamp::from_second(1_000).unwrap());
        let t1 = Time(Timestamp::from_second(2_000).unwrap());
        let alert = |name: &str, metric: &str| FiringAlert {
            alertname: name.into(),
            severity: "critical".into(),
            revision: 1,
            metric: metric.into(),
            ..FiringAlert::default()
        };
        let first = transition(&[], vec![alert(METRIC_BREACH, "a")], &t0);
        assert_eq!(names(&first.firing), names(&[alert(METRIC_BREACH, "a")]));
        assert!(first.resolved.is_empty());
        let mut changed = alert(METRIC_BREACH, "a");
        changed.message = "worse now".into();
        let second = transition(&first.next, vec![changed, alert(METRIC_BREACH, "b")], &t1);
        assert_eq!(names(&second.firing), names(&[alert(METRIC_BREACH, "b")]));
        assert_eq!(
            second.next[0].since,
            Some(t0.clone()),
            "an alert keeps its start"
        );
        assert_eq!(second.next[0].message, "worse now");
        let third = transition(&second.next, vec![alert(METRIC_BREACH, "b")], &t1);
        assert_eq!(names(&third.resolved), names(&[alert(METRIC_BREACH, "a")]));
        assert!(third.firing.is_empty());
    }
}
