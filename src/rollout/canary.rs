//! The canary's steps: which step a revision is on, what share of the
//! traffic it gets, when it moves on, and what gates its promotion. Pure:
//! the step lives in status, so any operator (or the same one after a
//! crash) that reads it continues where the last one stopped.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AnalysisStatus, CanaryStatus, HistoryEntry, Outcome, Verdict};
use crate::gates::{Failure, Gate};

/// One step of the plan, parsed once from the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// This percentage (0–100) of the traffic on the canary.
    SetWeight(i32),
    /// Hold: for this long, or (`None`) until promoted by hand.
    Pause(Option<Duration>),
}

/// One canary: a revision and when its canary started (a retry, or a
/// return to the revision later, is another canary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub revision: i64,
    /// Unix seconds of `status.canary.startedAt`.
    pub started: i64,
}

impl Attempt {
    pub fn of(status: &CanaryStatus) -> Self {
        Self {
            revision: status.revision,
            started: status.started_at.as_ref().map_or(0, |t| t.0.as_second()),
        }
    }

    /// `<revision>/<started>`: the value of `mlops.dev/abort`.
    pub fn value(&self) -> String {
        format!("{}/{}", self.revision, self.started)
    }

    /// `<revision>/<started>`, `started` in Unix seconds (`kubectl model`)
    /// or as `status.canary.startedAt` shows it (RFC 3339: the Argo CD
    /// actions, whose Lua cannot convert it).
    pub fn parse(value: &str) -> Option<Self> {
        let (revision, started) = value.trim().split_once('/')?;
        let started = match started.parse() {
            Ok(seconds) => seconds,
            Err(_) => started
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()?
                .as_second(),
        };
        Some(Self {
            revision: revision.parse().ok()?,
            started,
        })
    }
}

/// `kubectl model promote`, as the annotation it writes. Naming the canary
/// and its step keeps an old annotation from promoting a later canary: it
/// is level-triggered and needs no clean-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Promotion {
    /// End step `index` (a pause, usually).
    Step { canary: Attempt, index: i32 },
    /// Skip every remaining step.
    Full { canary: Attempt },
}

impl Promotion {
    /// The annotation's value: `<revision>/<started>/<step index>` or
    /// `<revision>/<started>/full`.
    pub fn parse(value: &str) -> Option<Self> {
        let (canary, step) = value.trim().rsplit_once('/')?;
        let canary = Attempt::parse(canary)?;
        match step {
            "full" => Some(Self::Full { canary }),
            index => Some(Self::Step {
                canary,
                index: index.parse().ok()?,
            }),
        }
    }

    pub fn value(&self) -> String {
        match self {
            Self::Step { canary, index } => format!("{}/{index}", canary.value()),
            Self::Full { canary } => format!("{}/full", canary.value()),
        }
    }
}

/// Everything a step decision looks at.
pub struct Inputs<'a> {
    pub steps: &'a [Step],
    /// The revision running as the canary.
    pub revision: i64,
    /// `status.canary` as stored.
    pub stored: Option<&'a CanaryStatus>,
    /// The stable Deployment's replica count (the HPA's, when autoscaled).
    pub stable_replicas: i32,
    /// Available pods of the canary Deployment running `revision`.
    pub canary_available: i32,
    /// The analysis of `revision`, when metric gates are configured;
    /// `None` without gates.
    pub analysis: Option<&'a AnalysisStatus>,
    /// Whether gates are configured at all (then `analysis` must pass).
    pub gated: bool,
    pub promotion: Option<Promotion>,
    pub now: &'a Time,
}

/// Canary pods for `weight` percent of `stable` pods: rounded up, at least
/// one while the weight is above 0, so a small share still gets a pod; none
/// while the model is scaled to zero.
pub fn replicas(weight: i32, stable: i32) -> i32 {
    let weight = weight.clamp(0, 100);
    if weight == 0 || stable <= 0 {
        return 0;
    }
    let stable = i64::from(stable.max(0));
    let wanted = ((i64::from(weight) * stable + 99) / 100).max(1);
    i32::try_from(wanted).unwrap_or(i32::MAX)
}

/// The weight in force at step `index`: the last `setWeight` at or before
/// it (0 before the first one); 100 once every step is done.
pub fn weight_at(steps: &[Step], index: usize) -> i32 {
    if index >= steps.len() {
        return 100;
    }
    steps[..=index]
        .iter()
        .rev()
        .find_map(|s| match s {
            Step::SetWeight(w) => Some((*w).clamp(0, 100)),
            Step::Pause(_) => None,
        })
        .unwrap_or(0)
}

/// Whether every step is done: the canary may be promoted.
/// The one rule for "a canary is running", shared by the operator's status
/// and `kubectl model`: the canary status is of the revision rolling out
/// (`current`), and that revision's rollout has not ended. A canary left in
/// status by an ended rollout (promoted, aborted, rolled back) runs no
/// more.
pub fn running<'a>(
    canary: Option<&'a CanaryStatus>,
    current: Option<i64>,
    history: &[HistoryEntry],
) -> Option<&'a CanaryStatus> {
    let current = current?;
    let entry = history.iter().find(|e| e.revision == current)?;
    canary.filter(|c| c.revision == current && entry.outcome == Outcome::Progressing)
}

pub fn done(status: &CanaryStatus) -> bool {
    status.step_index >= status.steps
}

/// The canary's next state. It moves on by at most one step per pass (or
/// to the end on a full promotion), so every step is seen in status.
pub fn advance(i: &Inputs<'_>) -> CanaryStatus {
    let total = i.steps.len();
    let Some(stored) = i.stored.filter(|s| s.revision == i.revision) else {
        return status_at(i.steps, i.revision, 0, i.now.clone(), i.now.clone());
    };
    let index = usize::try_from(stored.step_index).unwrap_or(0).min(total);
    let step_started = stored
        .step_started_at
        .clone()
        .unwrap_or_else(|| i.now.clone());
    let canary_started = stored.started_at.clone().unwrap_or_else(|| i.now.clone());
    let this = Attempt::of(stored);
    let next = match i.promotion {
        Some(Promotion::Full { canary }) if canary == this => total,
        _ if index < total && step_done(i, this, index, &step_started) => index + 1,
        _ => index,
    };
    let step_started = if next == index {
        step_started
    } else {
        i.now.clone()
    };
    status_at(i.steps, i.revision, next, step_started, canary_started)
}

/// The status of `revision` at step `index`, the step started at
/// `step_started` and the canary at `started`.
pub fn status_at(
    steps: &[Step],
    revision: i64,
    index: usize,
    step_started: Time,
    started: Time,
) -> CanaryStatus {
    let total = steps.len();
    let weight = weight_at(steps, index);
    let waiting = matches!(steps.get(index), Some(Step::Pause(None)));
    let summary = if index >= total {
        format!("promoting revision {revision}")
    } else if waiting {
        format!(
            "step {}/{total}: {weight}% on revision {revision}, waiting for promotion",
            index + 1
        )
    } else {
        format!(
            "step {}/{total}: {weight}% on revision {revision}",
            index + 1
        )
    };
    CanaryStatus {
        revision,
        step_index: i32::try_from(index).unwrap_or(i32::MAX),
        steps: i32::try_from(total).unwrap_or(i32::MAX),
        weight,
        started_at: Some(started),
        step_started_at: Some(step_started),
        waiting_for_promotion: waiting,
        summary,
    }
}

/// Step `index` is done: its pods are ready, every metric's latest check
/// was made during it and passed, and its pause (if any) is over or was
/// ended by hand.
fn step_done(i: &Inputs<'_>, this: Attempt, index: usize, started: &Time) -> bool {
    let promoted = i.promotion
        == Some(Promotion::Step {
            canary: this,
            index: i32::try_from(index).unwrap_or(i32::MAX),
        });
    let held = match i.steps.get(index) {
        Some(Step::Pause(None)) => !promoted,
        Some(Step::Pause(Some(d))) => !promoted && elapsed(started, i.now) < *d,
        Some(Step::SetWeight(_)) | None => false,
    };
    if held {
        return false;
    }
    let wanted = replicas(weight_at(i.steps, index), i.stable_replicas);
    i.canary_available >= wanted && checks_passed_since(i, started)
}

/// Every metric's latest check was made after the step started and passed:
/// a step is never left on a failed, inconclusive or older check.
fn checks_passed_since(i: &Inputs<'_>, started: &Time) -> bool {
    if !i.gated {
        return true;
    }
    let Some(analysis) = i.analysis.filter(|a| a.revision == i.revision) else {
        return false;
    };
    !analysis.metrics.is_empty()
        && analysis.metrics.iter().all(|m| {
            m.verdict == Verdict::Pass
                && m.checked_at
                    .as_ref()
                    .is_some_and(|at| at.0.as_second() > started.0.as_second())
        })
}

fn elapsed(from: &Time, to: &Time) -> Duration {
    let seconds = to.0.as_second().saturating_sub(from.0.as_second());
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// When a pause with a duration ends, for the requeue.
pub fn pause_left(steps: &[Step], status: &CanaryStatus, now: &Time) -> Option<Duration> {
    let index = usize::try_from(status.step_index).ok()?;
    let Some(Step::Pause(Some(d))) = steps.get(index) else {
        return None;
    };
    let started = status.step_started_at.as_ref()?;
    Some(
        d.saturating_sub(elapsed(started, now))
            .max(Duration::from_secs(1)),
    )
}

/// The gate the rollout decision sees for a canary: a failure (of the
/// analysis, or an abort by hand) rolls back at any step; promotion waits
/// for the last step, for the canary to run the full count (`filled`: its
/// pods become the stable ones, none is created on promotion) and then for
/// the analysis as usual.
pub fn gate(status: &CanaryStatus, analysis: Gate, aborted: Option<Failure>, filled: bool) -> Gate {
    if let Some(failure) = aborted {
        return Gate::Failed(failure);
    }
    match analysis {
        Gate::Failed(f) => Gate::Failed(f),
        Gate::Halted(why) => Gate::Halted(why),
        other if done(status) && filled => other,
        _ => Gate::Pending,
    }
}

#[cfg(test)]
mod tests;
