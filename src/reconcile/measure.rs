//! The measure step of the pipeline: starts a round of Prometheus queries
//! when `crate::analysis::schedule` says one is due, off the reconcile path
//! (`crate::outbound::rounds`), and judges it in the pass it wakes. Scheduling,
//! verdicts and the analysis' progress are pure, in `crate::analysis`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::context::Context;
use super::observe::Snapshot;
use crate::analysis::run::{self, Advance, Check, Mode};
use crate::analysis::schedule::{Analysed, Due, Schedule, conclude, schedule};
use crate::analysis::verdict::effective_limits;
use crate::analysis::window;
use crate::api::{AnalysisSpec, AnalysisStatus, Outcome};
use crate::cache::model::model_ref;
use crate::metrics::{CheckLabels, Gate, Metrics};
use crate::outbound::queries::Queries;
use crate::outbound::rounds::{BUSY_RETRY, Finished, Measuring, Start};
use crate::validate::Timing;

/// The revision the Deployment runs, as the analysis needs it.
pub(super) struct Running<'a> {
    pub revision: i64,
    pub model: &'a str,
    pub version: &'a str,
}

/// The measure step: judges the running revision's finished round, or
/// starts a round when one is due (`schedule`), and says what that
/// concludes (`conclude`). Never waits for Prometheus: a round runs as a
/// task of its own (`rounds`), and its result is judged by the reconcile it
/// wakes. Also returns the round judged, for `Outbound::give_back` should
/// the pass fail.
pub(super) fn measure(
    seen: &Snapshot,
    timing: Option<&Timing>,
    requested: i64,
    ctx: &Context,
) -> (Analysed, Option<Finished>) {
    let object = format!("{}/{}", seen.namespace, seen.name);
    // Taken by every pass: judged now, or discarded.
    let finished = ctx.outbound.rounds.take_finished(&object);
    let previous = &seen.previous;
    let (Some(spec), Some(timing)) = (seen.md.spec.rollout.analysis.as_ref(), timing) else {
        let analysed = Analysed {
            status: None,
            ..Analysed::unchanged(None)
        };
        return (analysed, None);
    };
    let Some(running) = running(seen, requested) else {
        return (Analysed::unchanged(previous.analysis.as_ref()), None);
    };
    let guard_key = format!("{}/{}/{}", seen.namespace, seen.name, running.revision);
    let stored = previous.analysis.as_ref();
    let since_guard_round = ctx.outbound.since_guard_round(&guard_key);
    let due = due_for(
        seen,
        running.revision,
        spec,
        timing.interval,
        since_guard_round,
    );
    let Some(plan) = schedule(&due) else {
        return (Analysed::unchanged(stored), None);
    };
    let measuring = Measuring {
        uid: seen.md.metadata.uid.clone(),
        generation: seen.md.metadata.generation,
        revision: running.revision,
        guard: plan.mode == Mode::Guard,
        retry_token: seen.retry_token.clone(),
    };
    // A round of what is analysed now, nothing holds the analysis, and
    // status does not show it yet (a pass that judged it wrote status,
    // then failed).
    let finished = finished.filter(|f| {
        plan.open && f.measuring == measuring && !shown(stored, f.measuring.revision, &f.at)
    });
    // Without a result, a due round is started (or is running already);
    // this pass then judges nothing new, as between two rounds.
    let mut wait = None;
    match &finished {
        Some(f) if !f.recorded => record_metrics(&ctx.metrics, seen, spec, &f.checks),
        Some(_) => {}
        None if plan.due => {
            let query = || queries(seen, spec, timing, &running, &plan, requested);
            wait = Some(match start(seen, &object, &measuring, query, ctx) {
                true => in_flight_recheck(spec),
                false => BUSY_RETRY,
            });
        }
        None => {}
    }
    let judged = finished.clone().map(|f| Finished {
        recorded: true,
        ..f
    });
    let mut analysed = analysis_after(seen, spec, timing, running.revision, plan.mode, finished);
    if wait.is_some() {
        analysed.next_round = wait;
    }
    (analysed, judged)
}

/// What the schedule weighs for the running `revision`.
fn due_for<'a>(
    seen: &'a Snapshot,
    revision: i64,
    spec: &AnalysisSpec,
    interval: Duration,
    since_guard_round: Option<Duration>,
) -> Due<'a> {
    let previous = &seen.previous;
    Due {
        revision,
        outcome: previous
            .history
            .iter()
            .find(|e| e.revision == revision)
            .map_or(Outcome::Progressing, |e| e.outcome),
        is_stable: previous.stable == Some(revision),
        health: &seen.health,
        post_promotion: spec.post_promotion.enabled,
        paused: seen.md.spec.paused,
        interval,
        stored: previous.analysis.as_ref(),
        retry_token: seen.retry_token.as_deref(),
        since_guard_round,
        now: &seen.now,
    }
}

/// The analysis of `revision` after this pass: the stored progress,
/// moved on by the round `finished` when one is judged now.
fn analysis_after(
    seen: &Snapshot,
    spec: &AnalysisSpec,
    timing: &Timing,
    revision: i64,
    mode: Mode,
    finished: Option<Finished>,
) -> Analysed {
    let (checks, measured_at) = finished.map(|f| (f.checks, f.at)).unzip();
    let (status, gate) = run::advance(Advance {
        spec,
        bake_time: timing.bake_time,
        revision,
        mode,
        previous: seen.previous.analysis.as_ref(),
        retry_token: seen.retry_token.as_deref(),
        now: &seen.now,
        checks,
        measured_at: measured_at.as_ref(),
    });
    conclude(
        mode,
        status,
        gate,
        spec.post_promotion.action,
        timing.interval,
        &seen.previous.history,
        &seen.now,
    )
}

/// Whether the stored analysis of `revision` holds a check made at `at`:
/// the round started then was judged and written.
fn shown(stored: Option<&AnalysisStatus>, revision: i64, at: &Time) -> bool {
    stored
        .filter(|a| a.revision == revision)
        .is_some_and(|a| a.metrics.iter().any(|m| m.checked_at.as_ref() == Some(at)))
}

/// When a reconcile whose round is in flight looks again if the round's
/// wake-up never came: by then its queries have timed out.
fn in_flight_recheck(spec: &AnalysisSpec) -> Duration {
    Duration::from_secs(u64::try_from(spec.prometheus.timeout_seconds).unwrap_or(60)) + BUSY_RETRY
}

/// Starts `query` as a task of its own when a slot is free and the same
/// round is not in flight already. The task keeps its result in `rounds`
/// and wakes the ModelDeployment's reconcile. `false`: no free slot.
fn start(
    seen: &Snapshot,
    object: &str,
    measuring: &Measuring,
    query: impl FnOnce() -> Queries,
    ctx: &Context,
) -> bool {
    let ticket = match ctx
        .outbound
        .rounds
        .start(object, &seen.namespace, measuring)
    {
        Start::Run(ticket) => ticket,
        Start::InFlight => return true,
        Start::Busy => return false,
    };
    let (id, query) = (ticket.id(), query());
    if measuring.guard {
        let key = format!("{object}/{}", measuring.revision);
        ctx.outbound.guard_round_started(key);
    }
    let (outbound, wake) = (ctx.outbound.clone(), ctx.wake.clone());
    let (md, at) = (model_ref(&seen.md), seen.now.clone());
    let task = tokio::spawn(async move {
        let checks = query.run(&outbound).await;
        if outbound.rounds.finish(ticket, at, checks) {
            wake.wake(md);
        }
    });
    ctx.outbound.rounds.spawned(object, id, task.abort_handle());
    true
}

/// The revision the Deployment runs, with its model and version.
fn running(seen: &Snapshot, requested: i64) -> Option<Running<'_>> {
    let revision = seen.current?;
    let served = seen.served_of(revision, requested)?;
    Some(Running {
        revision,
        model: served.model_name(),
        version: &served.model.version,
    })
}

/// One round's queries, with everything they need owned: they run in a
/// task of their own, after the reconcile that started them has returned.
fn queries(
    seen: &Snapshot,
    spec: &AnalysisSpec,
    timing: &Timing,
    running: &Running<'_>,
    plan: &Schedule,
    requested: i64,
) -> Queries {
    let stored = seen.previous.analysis.as_ref().filter(|_| plan.continuing);
    // Both revisions are measured over the same window: by default since
    // this analysis started (the revision started serving), 1m to 1h.
    let window = window::promql(window::window(
        timing.window,
        stored.and_then(|s| s.started_at.as_ref()),
        &seen.now,
    ));
    // Relative bounds compare with the Stable revision while a new one
    // rolls out; after promotion there is nothing serving to compare
    // with.
    let baseline = match plan.mode {
        Mode::Rollout { .. } => seen.previous.stable.filter(|s| *s != running.revision),
        Mode::Guard => None,
    }
    .and_then(|r| {
        let version = seen.served_of(r, requested)?.model.version.clone();
        Some((r, version))
    });
    // A canary runs side by side with the Stable revision: a relative
    // bound compares with its value in the same round only, never with
    // a baseline remembered from an earlier one.
    let last_baselines = stored
        .filter(|_| !seen.canary_is_current)
        .into_iter()
        .flat_map(|s| &s.metrics)
        .filter_map(|m| Some((m.name.clone(), m.baseline?)))
        .collect();
    Queries {
        spec: spec.clone(),
        namespace: seen.namespace.clone(),
        name: seen.name.clone(),
        model: running.model.to_string(),
        version: running.version.to_string(),
        revision: running.revision,
        window,
        baseline,
        last_baselines,
    }
}

/// A judged round's values and bounds on `/metrics`. Recorded by the
/// reconcile that judges it, not by the round's task: a ModelDeployment
/// deleted meanwhile must leave no series behind.
fn record_metrics(metrics: &Metrics, seen: &Snapshot, spec: &AnalysisSpec, checks: &[Check]) {
    for check in checks {
        let (lower, upper) = spec
            .metrics
            .iter()
            .find(|g| g.name == check.name)
            .map_or((None, None), |gate| {
                effective_limits(gate, check.judgement.baseline)
            });
        let judged = Gate {
            // No value: NaN, which Prometheus shows as such (not as a stale 0).
            value: check.judgement.value.unwrap_or(f64::NAN),
            lower,
            upper,
        };
        metrics
            .objects
            .set_gate(&seen.namespace, &seen.name, &check.name, judged);
        metrics
            .analysis_checks
            .get_or_create(&CheckLabels {
                verdict: check.judgement.verdict.to_string(),
            })
            .inc();
    }
}
