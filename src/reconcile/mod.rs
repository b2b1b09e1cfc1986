//! One reconcile, as a sequence: observe → validate → revision → measure →
//! plan → persist → act → report. Deciding is pure (`plan`); this file only
//! orders the effects, and each step says why it comes where it does.
//! Status is written and Events are published by `report` alone.

pub mod act;
pub mod context;
pub mod events;
pub mod first_status;
pub mod measure;
pub mod observe;
pub mod persist;
pub mod plan;
pub mod report;
pub mod revisions;
pub mod write_times;

#[cfg(test)]
mod no_write_tests;

pub use context::Context;

use std::sync::Arc;

use kube::runtime::controller::Action;

use crate::analysis::schedule::Analysed;
use crate::error::Error;
use crate::resources::route::gateway_route;
use crate::rollout::canary::Step;
use crate::status::Blocker;
use crate::{reasons, validate};
use act::Acted;
use act::http_route;
use measure::measure;
use observe::Snapshot;
use persist::WriteDue;
use plan::Plan;
use report::{Report, count_dropped, count_outcomes, deliver_alerts, due_if_changed};
use revisions::{ensure_revision, prune_revisions, read_snapshots};

pub async fn reconcile(
    md: Arc<crate::api::ModelDeployment>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    // Reconciling before every cache has its first full list would mistake
    // existing children for missing ones.
    ctx.stores.wait_until_ready().await;
    // Observe: one snapshot of the caches and one `now` for the whole pass.
    let mut seen = Snapshot::observe(md, &ctx)?;
    // Our last status write has not reached the cache yet: nothing is
    // decided from what it replaced. Its watch event brings us back.
    if ctx.status_writes.outdated(&seen.md) {
        return Ok(Action::requeue(write_times::PROGRESS_WINDOW));
    }
    // The few snapshots a decision may need, read before deciding.
    read_snapshots(&mut seen, &ctx).await?;
    let mut report = Report::default();
    let result = validate_and_decide(&seen, &mut report, &ctx).await;
    // Whatever the pass's result: what it wrote is announced, once.
    report.publish(&seen, &ctx).await;
    result
}

/// Validate, revision, measure, and what follows: the pass once observed.
async fn validate_and_decide(
    seen: &Snapshot,
    report: &mut Report,
    ctx: &Context,
) -> Result<Action, Error> {
    // Validate into typed values. What cannot run is reported and waits for
    // the user's edit; nothing that runs is touched.
    let checked = validate::spec(&seen.md.spec)
        .and_then(|spec| validate::platform(&seen.md.spec, &ctx.platform).map(|()| spec));
    let spec = match checked {
        Ok(spec) => spec,
        Err(cause) => return report_blocked(seen, &Blocker::invalid(cause), report, ctx).await,
    };
    // The user's HTTPRoute, when a canary splits through one: missing,
    // unsuitable, not opted in or splitting to Services that are not ours,
    // it is reported and nothing changes. It is not watched, so look again
    // for the user's fix.
    let route = match gateway_route(&seen.md) {
        Some(route) => {
            let read =
                http_route::read(ctx.client.clone(), &seen.namespace, route, &seen.name).await?;
            let checked = match read {
                Ok(route) => {
                    http_route::check_backends(route, &seen.md, &seen.namespace, ctx).await?
                }
                Err(blocker) => Err(blocker),
            };
            match checked {
                Ok(route) => Some(route),
                Err(blocker) => {
                    report_blocked(seen, &blocker, report, ctx).await?;
                    return Ok(Action::requeue(ROUTE_RECHECK));
                }
            }
        }
        None => None,
    };
    // The spec's revision. Its snapshot is created before anything refers
    // to its number, so a rollback can always find what ran. A snapshot
    // name taken by an object we do not own stops here, untouched.
    let requested = match ensure_revision(seen, ctx).await {
        Ok(requested) => requested,
        Err(e @ Error::NameConflict { .. }) => {
            let blocker = Blocker {
                reason: reasons::NAME_CONFLICT,
                message: e.to_string(),
            };
            return report_blocked(seen, &blocker, report, ctx).await;
        }
        Err(e) => return Err(e),
    };
    // Measure: the finished round of metric checks, if any; a due round is
    // started off this path, never waited for (one team's hanging
    // Prometheus must not hold the workers everyone's reconciles need).
    let (analysed, judged) = measure(seen, spec.analysis.as_ref(), requested, ctx);
    let steps = spec.canary.as_deref();
    let result = decide_and_act(
        seen,
        requested,
        &analysed,
        steps,
        route.as_ref(),
        report,
        ctx,
    )
    .await;
    // A round judged by a pass that failed (a refused status write) is
    // judged again by the retry, not run again.
    if result.is_err() {
        ctx.outbound
            .give_back(&format!("{}/{}", seen.namespace, seen.name), judged);
    }
    result
}

/// Plan, persist, act and report: the rest of the pass, once measured.
async fn decide_and_act(
    seen: &Snapshot,
    requested: i64,
    analysed: &Analysed,
    steps: Option<&[Step]>,
    route: Option<&http_route::Route>,
    report: &mut Report,
    ctx: &Context,
) -> Result<Action, Error> {
    // Plan: every decision of this pass, purely.
    let weights = route.and_then(|r| r.split.weights());
    let mut plan = plan::plan(seen, requested, analysed, steps, weights)?;
    // Persist first only what a crash before acting could otherwise undo
    // (a rollback forgotten, a failed version tried again): the one status
    // write of a pass that comes before the end of it.
    if plan.persist_first {
        let decided = plan.decided_status(seen);
        let announcements = std::mem::take(&mut plan.announcements);
        report
            .write(seen, &decided, WriteDue::Now, announcements, ctx)
            .await?;
        count_outcomes(&std::mem::take(&mut plan.outcomes), ctx);
    }
    // Act: the children run the planned revision.
    let acted = act::apply_children(seen, &plan, route, ctx).await?;
    // Report: status (once per pass), events, alerts, metrics.
    finish(seen, plan, acted, report, ctx).await
}

/// The status the pass ends with, its notifications and what is next.
async fn finish(
    seen: &Snapshot,
    plan: Plan,
    acted: Acted,
    report: &mut Report,
    ctx: &Context,
) -> Result<Action, Error> {
    let status = plan.status_after(seen, acted.deployment.as_deref(), acted.invalid.as_ref());
    report.announce(acted.announcements);
    // One status write per pass: after a persisted decision, the next pass
    // (woken by the Deployment's change) shows the progress. A refused child
    // is the exception: that waits for the user, so no next pass would.
    let (due, wait) = match (report.wrote(), &acted.invalid) {
        (true, Some(_)) => (WriteDue::Now, None),
        (true, None) => (WriteDue::Never, None),
        // A refused child waits for the user: no later pass would write.
        (false, Some(_)) => (persist::due(seen.md.status.as_ref(), &status, None), None),
        (false, None) => {
            let hold = ctx.status_writes.hold(&seen.md, &seen.now);
            match persist::due(seen.md.status.as_ref(), &status, hold) {
                WriteDue::After(delay) => (WriteDue::After(delay), Some(delay)),
                due => (due, None),
            }
        }
    };
    // A decision written first took its events and outcomes with it.
    if report
        .write(seen, &status, due, plan.announcements, ctx)
        .await?
    {
        count_outcomes(&plan.outcomes, ctx);
    }
    ctx.metrics
        .record_state(&seen.namespace, &seen.name, &status, &gate_names(seen));
    // Notifications are sent only once status holds them (a refused write
    // returned above): what was sent is always also what will be retried.
    let deliveries = deliver_alerts(seen, report.holds(seen), ctx);
    // Dropped once, when the status without them is written.
    if report.wrote() {
        count_dropped(&plan.notifications_dropped, ctx);
    }
    prune_revisions(seen, &plan.revisions, ctx).await?;
    tracing::info!(
        namespace = seen.namespace,
        name = seen.name,
        phase = status.phase.map(|p| p.to_string()).unwrap_or_default(),
        revision = plan.decision.target,
        requested = plan.revisions.requested,
        invalid = acted.invalid.as_ref().map_or("", |b| b.message.as_str()),
        "reconciled"
    );
    let requeue = deliveries.map_or(plan.requeue, |d| d.min(plan.requeue));
    Ok(match (acted.invalid, wait) {
        (Some(blocker), _) => wait_for_user(&blocker),
        (None, Some(delay)) => Action::requeue(delay.min(requeue)),
        (None, None) => Action::requeue(requeue),
    })
}

/// A spec the operator cannot run: reported in status and events, and the
/// running children stay as they are.
async fn report_blocked(
    seen: &Snapshot,
    cause: &Blocker,
    report: &mut Report,
    ctx: &Context,
) -> Result<Action, Error> {
    let stored = seen.md.status.as_ref();
    let status = plan::blocked_status(seen, cause);
    ctx.metrics
        .record_state(&seen.namespace, &seen.name, &status, &gate_names(seen));
    let due = due_if_changed(stored, &status);
    report.write(seen, &status, due, Vec::new(), ctx).await?;
    tracing::info!(
        namespace = seen.namespace,
        name = seen.name,
        reason = cause.reason,
        invalid = cause.message,
        "reconciled: blocked"
    );
    Ok(wait_for_user(cause))
}

/// A spec the user must fix wakes us when it is edited. A foreign object
/// in a child's place is not watched (it lacks our labels): look again
/// now and then, so that its removal is noticed without an edit.
fn wait_for_user(blocker: &Blocker) -> Action {
    match blocker.reason {
        reasons::NAME_CONFLICT => Action::requeue(NAME_CONFLICT_RECHECK),
        _ => Action::await_change(),
    }
}

const NAME_CONFLICT_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);
const ROUTE_RECHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// The metric gates the spec has now: the series of any other gate (one
/// renamed or removed) end with this pass.
fn gate_names(seen: &Snapshot) -> Vec<&str> {
    let gates = seen.md.spec.rollout.analysis.as_ref();
    gates
        .into_iter()
        .flat_map(|a| a.metrics.iter().map(|m| m.name.as_str()))
        .collect()
}
