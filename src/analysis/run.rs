//! How a revision's analysis moves on with each round of checks. Pure:
//! stored analysis and new checks in, next analysis and a gate verdict out.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::verdict::{Judgement, num};
use crate::api::{AnalysisPhase, AnalysisSpec, AnalysisStatus, Finding, MetricCheck, Verdict};
use crate::gates::{Failure, Gate};
use crate::reasons;

/// What the analysed revision is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Rolling out; `complete` once every pod runs it and is available.
    Rollout { complete: bool },
    /// Stable, guarded after promotion.
    Guard,
}

/// One metric's check of this round.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: String,
    pub query: String,
    pub judgement: Judgement,
}

pub struct Advance<'a> {
    pub spec: &'a AnalysisSpec,
    /// Parsed `spec.bakeTime`.
    pub bake_time: Duration,
    pub revision: i64,
    pub mode: Mode,
    /// `status.analysis` as stored.
    pub previous: Option<&'a AnalysisStatus>,
    /// The `mlops.dev/retry` annotation now.
    pub retry_token: Option<&'a str>,
    pub now: &'a Time,
    /// This round's checks, in spec order; `None` when none was due.
    pub checks: Option<Vec<Check>>,
    /// When the round was made, if before `now`: a round runs off the
    /// reconcile that started it and is judged by a later one, and its
    /// checks count as of when it ran (a round started before every pod was
    /// updated is no fresh check of the finished rollout).
    pub measured_at: Option<&'a Time>,
}

/// Whether the stored analysis is this revision's current one; otherwise a
/// new analysis starts.
pub fn continues(
    previous: Option<&AnalysisStatus>,
    revision: i64,
    mode: Mode,
    retry_token: Option<&str>,
) -> bool {
    let Some(p) = previous.filter(|p| p.revision == revision) else {
        return false;
    };
    match mode {
        // A finished analysis of a revision rolling out again is an earlier
        // attempt's; a stopped one restarts when the retry annotation changes.
        Mode::Rollout { .. } => match p.phase {
            AnalysisPhase::Running | AnalysisPhase::Baking => true,
            AnalysisPhase::Inconclusive => p.retry_token.as_deref() == retry_token,
            AnalysisPhase::Passed | AnalysisPhase::Failed | AnalysisPhase::Guarding => false,
        },
        Mode::Guard => matches!(p.phase, AnalysisPhase::Passed | AnalysisPhase::Guarding),
    }
}

/// How long until the next round is due (zero: now).
pub fn next_round_in(
    previous: Option<&AnalysisStatus>,
    interval: Duration,
    now: &Time,
) -> Duration {
    let last = previous
        .into_iter()
        .flat_map(|p| &p.metrics)
        .filter_map(|m| m.checked_at.as_ref())
        .map(|t| t.0.as_millisecond())
        .max();
    let Some(last) = last else {
        return Duration::ZERO;
    };
    let elapsed = u64::try_from(now.0.as_millisecond() - last).unwrap_or(0);
    interval.saturating_sub(Duration::from_millis(elapsed))
}

pub fn advance(step: Advance<'_>) -> (AnalysisStatus, Gate) {
    let spec = step.spec;
    let mut status = match step.previous {
        Some(p) if continues(Some(p), step.revision, step.mode, step.retry_token) => {
            let mut p = p.clone();
            if step.mode == Mode::Guard && p.phase == AnalysisPhase::Passed {
                p.phase = AnalysisPhase::Guarding;
                for m in &mut p.metrics {
                    m.failed = 0;
                    m.inconclusive = 0;
                }
            }
            p
        }
        _ => AnalysisStatus {
            revision: step.revision,
            phase: match step.mode {
                Mode::Rollout { .. } => AnalysisPhase::Running,
                Mode::Guard => AnalysisPhase::Guarding,
            },
            started_at: Some(step.now.clone()),
            retry_token: step.retry_token.map(str::to_string),
            ..AnalysisStatus::default()
        },
    };
    if status.phase == AnalysisPhase::Inconclusive {
        return (status.clone(), Gate::Halted(status.message));
    }
    if let Mode::Rollout { complete: true } = step.mode
        && status.bake_started_at.is_none()
    {
        status.bake_started_at = Some(step.now.clone());
    }
    if let Some(checks) = step.checks {
        let baked = status
            .bake_started_at
            .as_ref()
            .is_some_and(|b| elapsed(b, step.now) >= step.bake_time);
        let at = step.measured_at.unwrap_or(step.now);
        status.metrics = record(&status.metrics, checks, step.mode, spec, at, baked);
    }
    match step.mode {
        Mode::Rollout { .. } => judge_rollout(status, spec, step.bake_time, step.now),
        Mode::Guard => judge_guard(status, spec),
    }
}

/// The metrics after this round: spec order, counters moved on.
fn record(
    previous: &[MetricCheck],
    checks: Vec<Check>,
    mode: Mode,
    spec: &AnalysisSpec,
    now: &Time,
    baked: bool,
) -> Vec<MetricCheck> {
    checks
        .into_iter()
        .map(|c| {
            let old = previous
                .iter()
                .find(|m| m.name == c.name)
                .cloned()
                .unwrap_or_default();
            let j = c.judgement;
            // A comparison still collecting samples is no failure to answer:
            // it counts against inconclusiveLimit only once the bake time is
            // over (and never promotes).
            let collecting = !baked
                && j.evidence
                    .as_ref()
                    .is_some_and(|e| matches!(e.finding, Finding::Collecting | Finding::Undecided));
            let mut m = MetricCheck {
                name: c.name,
                verdict: j.verdict,
                value: j.value,
                baseline: j.baseline,
                bound: j.bound,
                message: j.message,
                query: c.query,
                checked_at: Some(now.clone()),
                evidence: j.evidence,
                ..old.clone()
            };
            match mode {
                Mode::Rollout { .. } => match j.verdict {
                    Verdict::Pass if j.on_data => m.passed += 1,
                    Verdict::Pass => {}
                    Verdict::Fail => m.failed += 1,
                    Verdict::Inconclusive if collecting => {}
                    Verdict::Inconclusive => m.inconclusive += 1,
                },
                // After promotion a breach is failures in a row; counters
                // stop one past their limit so a lasting breach or outage
                // does not rewrite status every round.
                Mode::Guard => {
                    match j.verdict {
                        Verdict::Pass => {
                            m.failed = 0;
                            m.inconclusive = 0;
                        }
                        Verdict::Fail => m.failed = (m.failed + 1).min(spec.failure_limit + 1),
                        Verdict::Inconclusive => {
                            m.inconclusive = (m.inconclusive + 1).min(spec.inconclusive_limit + 1);
                        }
                    }
                    // Nothing that matters changed: keep the stored check, so
                    // a guarded model costs no status write per round (the
                    // latest value is on /metrics).
                    if old.checked_at.is_some()
                        && (m.verdict, m.failed, m.inconclusive)
                            == (old.verdict, old.failed, old.inconclusive)
                    {
                        return old;
                    }
                }
            }
            m
        })
        .collect()
}

fn judge_rollout(
    mut status: AnalysisStatus,
    spec: &AnalysisSpec,
    bake_time: Duration,
    now: &Time,
) -> (AnalysisStatus, Gate) {
    if let Some(m) = status
        .metrics
        .iter()
        .find(|m| m.failed > spec.failure_limit)
    {
        let failure = Failure {
            reason: reasons::ANALYSIS_FAILED,
            message: breach_message(m, spec.failure_limit),
        };
        status.phase = AnalysisPhase::Failed;
        status.message = failure.message.clone();
        return (status, Gate::Failed(failure));
    }
    if let Some(m) = status
        .metrics
        .iter()
        .find(|m| m.inconclusive > spec.inconclusive_limit)
    {
        status.phase = AnalysisPhase::Inconclusive;
        status.message = halted_message(m, spec.inconclusive_limit);
        return (status.clone(), Gate::Halted(status.message));
    }
    let passing = status
        .metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Pass && m.passed > 0)
        .count();
    let total = spec.metrics.len();
    let waiting: Vec<&str> = status
        .metrics
        .iter()
        .filter(|m| !(m.verdict == Verdict::Pass && m.passed > 0))
        .map(|m| m.name.as_str())
        .collect();
    let Some(bake_start) = status.bake_started_at.as_ref() else {
        status.phase = AnalysisPhase::Running;
        status.message = format!(
            "checking while pods are replaced; {passing}/{total} metrics pass{}",
            collecting_note(&status.metrics)
        );
        return (status, Gate::Pending);
    };
    let baked = elapsed(bake_start, now);
    let measured = status.metrics.len() == total;
    // Promotion rests on checks of the revision as it finally runs: every
    // metric's latest check must come after all pods were updated.
    let fresh = status.metrics.iter().all(|m| {
        m.checked_at
            .as_ref()
            .is_some_and(|t| t.0.as_second() >= bake_start.0.as_second())
    });
    if baked >= bake_time && measured && fresh && passing == total {
        status.phase = AnalysisPhase::Passed;
        status.message = format!(
            "every metric passed ({total}/{total}) after baking for {}",
            human(bake_time)
        );
        return (status, Gate::Passed);
    }
    status.phase = AnalysisPhase::Baking;
    status.message = if baked < bake_time {
        format!(
            "baking: {} of {} left; {passing}/{total} metrics pass{}",
            human(bake_time - baked),
            human(bake_time),
            collecting_note(&status.metrics)
        )
    } else {
        baked_but_waiting(measured, fresh, &waiting)
    };
    (status, Gate::Pending)
}

/// What a baked revision still waits for before promotion.
fn baked_but_waiting(measured: bool, fresh: bool, waiting: &[&str]) -> String {
    if !measured {
        "baked; waiting for the first check of every metric".to_string()
    } else if !fresh {
        "baked; waiting for a check made after every pod was updated".to_string()
    } else {
        format!(
            "baked; waiting for a passing check on real data of: {}",
            waiting.join(", ")
        )
    }
}

/// Why the rollout stopped, and what a person can do about it.
fn halted_message(m: &MetricCheck, limit: i32) -> String {
    let still_collecting = m.evidence.as_ref().is_some_and(|e| {
        m.verdict == Verdict::Inconclusive
            && matches!(e.finding, Finding::Collecting | Finding::Undecided)
    });
    if still_collecting {
        format!(
            "stopped: metric {} had no verdict in {} checks after the bake time (inconclusiveLimit {limit}); last: {}. The revision is neither promoted nor rolled back: let traffic accumulate and `kubectl model retry`, or lengthen bakeTime, widen the margin or lower minSamples",
            m.name, m.inconclusive, m.message
        )
    } else {
        format!(
            "stopped: metric {} had {} checks without an answer (inconclusiveLimit {limit}); last: {}. The revision is neither promoted nor rolled back: fix the metric or Prometheus, then `kubectl model retry`",
            m.name, m.inconclusive, m.message
        )
    }
}

fn judge_guard(mut status: AnalysisStatus, spec: &AnalysisSpec) -> (AnalysisStatus, Gate) {
    status.phase = AnalysisPhase::Guarding;
    if let Some(m) = status
        .metrics
        .iter()
        .find(|m| m.failed > spec.failure_limit)
    {
        let failure = Failure {
            reason: reasons::POST_PROMOTION_BREACH,
            message: breach_message(m, spec.failure_limit),
        };
        status.message = format!("breach: {}", failure.message);
        return (status, Gate::Failed(failure));
    }
    let failing: Vec<&str> = status
        .metrics
        .iter()
        .filter(|m| m.verdict != Verdict::Pass)
        .map(|m| m.name.as_str())
        .collect();
    status.message = if failing.is_empty() {
        "guarding the stable revision: every metric in bounds".into()
    } else {
        format!(
            "guarding the stable revision; not passing now: {}",
            failing.join(", ")
        )
    };
    (status, Gate::Passed)
}

/// E.g. "metric error-rate failed 2 checks (failureLimit 1): 0.12 is above
/// 0.05; query: sum(...)".
fn breach_message(m: &MetricCheck, limit: i32) -> String {
    let value = m.value.map_or_else(|| "no value".to_string(), num);
    format!(
        "metric {} failed {} checks (failureLimit {limit}): {}; value {value}, bound {}; query: {}",
        m.name, m.failed, m.message, m.bound, m.query
    )
}

/// "; collecting: error-rate (200 of 1,000), latency (0 of 500)" for the
/// comparisons still waiting for samples; empty when none is.
fn collecting_note(metrics: &[MetricCheck]) -> String {
    let waiting: Vec<String> = metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Inconclusive)
        .filter_map(|m| {
            let e = m.evidence.as_ref()?;
            match e.finding {
                Finding::Collecting => Some(format!(
                    "{} ({} of {})",
                    m.name,
                    crate::analysis::comparison::count(e.samples.min(e.stable_samples) as f64),
                    crate::analysis::comparison::count(e.min_samples as f64)
                )),
                Finding::Undecided => Some(format!("{} (undecided)", m.name)),
                _ => None,
            }
        })
        .collect();
    if waiting.is_empty() {
        String::new()
    } else {
        format!("; collecting: {}", waiting.join(", "))
    }
}

fn elapsed(since: &Time, now: &Time) -> Duration {
    Duration::from_millis(
        u64::try_from(now.0.as_millisecond() - since.0.as_millisecond()).unwrap_or(0),
    )
}

/// Durations as the spec writes them: "1m30s", "45s", "0s".
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests;
