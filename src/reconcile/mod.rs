//! One reconcile, as a sequence: observe → validate → revision → measure →
//! plan → persist → act → report. Deciding is pure (`plan`); this file only
//! orders the effects, and each step says why it comes where it does.

pub mod act;
pub mod context;
pub mod events;
pub mod first_status;
pub mod measure;
pub mod observe;
pub mod persist;
pub mod plan;
pub mod revisions;
pub mod write_times;

#[cfg(test)]
mod no_write_tests;

pub use context::Context;

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::analysis::schedule::Analysed;
use crate::api::{AlertChannel, ModelDeploymentStatus};
use crate::error::Error;
use crate::metrics::{DeliveryLabels, RevisionLabels};
use crate::outbound::deliver::Target;
use crate::resources::route::gateway_route;
use crate::rollout::canary::Step;
use crate::status::Blocker;
use crate::{reasons, validate};
use act::Acted;
use act::route;
use events::Announcement;
use measure::measure;
use observe::Snapshot;
use persist::WriteDue;
use plan::Plan;
use revisions::{ensure_revision, prune_revisions};

pub async fn reconcile(
    md: Arc<crate::api::ModelDeployment>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    // Reconciling before every cache has its first full list would mistake
    // existing children for missing ones.
    ctx.stores.wait_until_ready().await;
    // Observe: one snapshot of the caches and one `now` for the whole pass.
    let seen = Snapshot::observe(md, &ctx)?;
    // Our last status write has not reached the cache yet: nothing is
    // decided from what it replaced. Its watch event brings us back.
    if ctx.status_writes.outdated(&seen.md) {
        return Ok(Action::requeue(write_times::PROGRESS_WINDOW));
    }
    // Validate into typed values. What cannot run is reported and waits for
    // the user's edit; nothing that runs is touched.
    let spec = match validate::spec(&seen.md.spec) {
        Ok(spec) => spec,
        Err(cause) => return report_invalid(&seen, &Blocker::invalid(cause), &ctx).await,
    };
    // The user's HTTPRoute, when a canary splits through one: missing or
    // unsuitable, it is reported like a spec error and nothing changes. It
    // is not watched, so look again for the user's fix.
    let route = match gateway_route(&seen.md) {
        Some(route) => {
            match route::read(ctx.client.clone(), &seen.namespace, route, &seen.name).await? {
                Ok(route) => Some(route),
                Err(blocker) => {
                    report_invalid(&seen, &blocker, &ctx).await?;
                    return Ok(Action::requeue(ROUTE_RECHECK));
                }
            }
        }
        None => None,
    };
    // The spec's revision. Its snapshot is created before anything refers
    // to its number, so a rollback can always find what ran. A snapshot
    // name taken by an object we do not own stops here, untouched.
    let requested = match ensure_revision(&seen, &ctx).await {
        Ok(requested) => requested,
        Err(e @ Error::NameConflict { .. }) => {
            let blocker = Blocker {
                reason: reasons::NAME_CONFLICT,
                message: e.to_string(),
            };
            return report_invalid(&seen, &blocker, &ctx).await;
        }
        Err(e) => return Err(e),
    };
    // Measure: the finished round of metric checks, if any; a due round is
    // started off this path, never waited for (one team's hanging
    // Prometheus must not hold the workers everyone's reconciles need).
    let (analysed, judged) = measure(&seen, spec.analysis.as_ref(), requested, &ctx);
    let steps = spec.canary.as_deref();
    let result = decide_and_act(&seen, requested, &analysed, steps, route.as_ref(), &ctx).await;
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
    route: Option<&route::Route>,
    ctx: &Context,
) -> Result<Action, Error> {
    // Plan: every decision of this pass, purely.
    let mut plan = plan::plan(seen, requested, analysed, steps)?;
    // Persist first only what a crash before acting could otherwise undo.
    let persisted = match plan.persist_first {
        true => Some(persist_decision(seen, &mut plan, ctx).await?),
        false => None,
    };
    // Act: the children run the planned revision.
    let acted = act::apply_children(seen, &plan, route, ctx).await?;
    // Report: status (once per pass), events, alerts, metrics.
    report(seen, plan, acted, persisted, ctx).await
}

/// Writes the decision before it is acted on, and announces it. Returns the
/// status written and its resourceVersion.
async fn persist_decision(
    seen: &Snapshot,
    plan: &mut Plan,
    ctx: &Context,
) -> Result<(ModelDeploymentStatus, Option<String>), Error> {
    let status = plan::status(seen, plan, seen.deployment.as_deref(), None, true);
    let version = persist::write(seen, &status, seen.md.resource_version(), ctx).await?;
    // Events only once their status is written: a refused write is retried,
    // and its events must not repeat with every attempt.
    let mut announcements = std::mem::take(&mut plan.announcements);
    announcements.extend(events::for_transitions(
        &seen.md,
        seen.md.status.as_ref(),
        &status,
    ));
    events::publish(&seen.md, announcements, ctx).await;
    count_outcomes(&std::mem::take(&mut plan.outcomes), ctx);
    Ok((status, version))
}

async fn report(
    seen: &Snapshot,
    plan: Plan,
    acted: Acted,
    persisted: Option<(ModelDeploymentStatus, Option<String>)>,
    ctx: &Context,
) -> Result<Action, Error> {
    let status = plan::status(
        seen,
        &plan,
        acted.deployment.as_deref(),
        acted.invalid.as_ref(),
        false,
    );
    // One status write per pass: after a persisted decision, the next pass
    // (woken by the Deployment's change) shows the progress. A refused child
    // is the exception: that waits for the user, so no next pass would.
    let mut before = seen.md.status.clone();
    let mut written = None;
    let mut wait = None;
    let mut persisted_status = None;
    match persisted {
        Some((persisted, version)) => {
            before = Some(persisted.clone());
            persisted_status = Some(persisted);
            if acted.invalid.is_some() {
                persist::write(seen, &status, version, ctx).await?;
                written = Some(&status);
            }
        }
        None => {
            // A refused child waits for the user: no later pass would write.
            let since = match acted.invalid {
                Some(_) => None,
                None => ctx.status_writes.hold(&seen.md, &seen.now),
            };
            match persist::due(before.as_ref(), &status, since) {
                WriteDue::Now => {
                    persist::write(seen, &status, seen.md.resource_version(), ctx).await?;
                    written = Some(&status);
                }
                WriteDue::After(delay) => wait = Some(delay),
                WriteDue::Never => {}
            }
        }
    }
    let mut announcements = acted.announcements;
    if let Some(written) = written {
        announcements.extend(plan.announcements.iter().cloned());
        announcements.extend(events::for_transitions(&seen.md, before.as_ref(), written));
        count_outcomes(&plan.outcomes, ctx);
    }
    events::publish(&seen.md, announcements, ctx).await;
    ctx.metrics.record_state(
        &seen.namespace,
        &seen.name,
        seen.md.status.as_ref(),
        &status,
    );
    // Notifications are sent only once status holds them (a refused write
    // returned above): what was sent is always also what will be retried.
    let holds = written
        .or(persisted_status.as_ref())
        .or(seen.md.status.as_ref());
    let deliveries = deliver_alerts(seen, holds, ctx);
    // Dropped once, when the status without them is written.
    if written.is_some() || persisted_status.is_some() {
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
async fn report_invalid(seen: &Snapshot, cause: &Blocker, ctx: &Context) -> Result<Action, Error> {
    let stored = seen.md.status.as_ref();
    let status = plan::invalid_status(seen, cause);
    ctx.metrics
        .record_state(&seen.namespace, &seen.name, stored, &status);
    if stored != Some(&status) {
        persist::write(seen, &status, seen.md.resource_version(), ctx).await?;
        let announcements: Vec<Announcement> = events::for_transitions(&seen.md, stored, &status);
        events::publish(&seen.md, announcements, ctx).await;
    }
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

/// Counts revisions whose rollout ended, for `/metrics`, once their
/// outcome is written.
fn count_outcomes(outcomes: &[RevisionLabels], ctx: &Context) {
    for labels in outcomes {
        ctx.metrics.revision_outcomes.get_or_create(labels).inc();
    }
}

/// Hands the notifications `status` holds to the delivery tasks, and
/// firing alerts due a refresh; Events were already sent by the Degraded
/// condition's transition. Returns when a pass should look again for them.
fn deliver_alerts(
    seen: &Snapshot,
    status: Option<&ModelDeploymentStatus>,
    ctx: &Context,
) -> Option<std::time::Duration> {
    let channels = seen.md.spec.alerts.as_ref()?;
    if channels.alertmanager.is_none() && channels.webhook.is_none() {
        return None;
    }
    let target = Target {
        namespace: seen.namespace.clone(),
        name: seen.name.clone(),
        model: seen.served.model_name().to_string(),
        alertmanager: channels.alertmanager.as_ref().map(|a| a.url.clone()),
        webhook: channels.webhook.as_ref().map(|w| w.url_secret_ref.clone()),
    };
    let (firing, outbox) = status.map_or((&[][..], &[][..]), |s| {
        (s.alerts.as_slice(), s.alert_outbox.as_slice())
    });
    let cached = seen.previous.alert_outbox.as_slice();
    ctx.outbound
        .deliverer
        .deliver(&target, firing, outbox, cached)
}

/// Notifications dropped from a full outbox, for `/metrics`
/// (`alert_deliveries_total{result="dropped"}`).
fn count_dropped(channels: &[AlertChannel], ctx: &Context) {
    for channel in channels {
        ctx.metrics
            .alert_deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.to_string().to_lowercase(),
                result: "dropped".into(),
            })
            .inc();
    }
    if !channels.is_empty() {
        tracing::warn!(
            dropped = channels.len(),
            "alert outbox full: the oldest notifications were dropped unsent"
        );
    }
}
