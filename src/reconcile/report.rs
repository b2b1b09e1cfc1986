//! Report: the one place a pass writes its ModelDeployment's status and
//! publishes Events, and where it hands notifications to their channels
//! and counts outcomes for `/metrics`.
//!
//! A pass writes status at most once, at its end (`Report::write`); the one
//! exception is a decision a crash could undo, written before the children
//! change (`reconcile::decide_and_act`). Events are queued as the pass goes
//! and published once, when it ends, whatever its result: those that go
//! with a status change only if that status was written, so a refused
//! write, retried, never repeats them.

use kube::{Resource, ResourceExt};

use super::context::Context;
use super::events::{self, Announcement};
use super::observe::Snapshot;
use super::persist::{self, WriteDue};
use crate::api::{AlertChannel, ModelDeploymentStatus};
use crate::error::Error;
use crate::metrics::{DeliveryLabels, RevisionLabels};
use crate::outbound::deliver::Target;

/// What one pass has written and has to announce.
#[derive(Default)]
pub struct Report {
    /// Events to publish when the pass ends, in the order they arose.
    queued: Vec<Announcement>,
    /// The status this pass wrote last, and the resourceVersion it got.
    written: Option<(ModelDeploymentStatus, Option<String>)>,
}

impl Report {
    /// Events that stand whatever happens to status (a child created, hand
    /// edits undone).
    pub fn announce(&mut self, announcements: Vec<Announcement>) {
        self.queued.extend(announcements);
    }

    /// What status holds now: this pass's last write, else the stored one.
    pub fn holds<'a>(&'a self, seen: &'a Snapshot) -> Option<&'a ModelDeploymentStatus> {
        match &self.written {
            Some((status, _)) => Some(status),
            None => seen.md.status.as_ref(),
        }
    }

    /// Whether this pass wrote status.
    pub fn wrote(&self) -> bool {
        self.written.is_some()
    }

    /// Writes `status` when `due`, based on what this pass last wrote (or
    /// the object it observed), and queues the events that go with it:
    /// `with_status`, then the conditions' transitions a person should
    /// see. Returns whether it wrote.
    pub async fn write(
        &mut self,
        seen: &Snapshot,
        status: &ModelDeploymentStatus,
        due: WriteDue,
        with_status: Vec<Announcement>,
        ctx: &Context,
    ) -> Result<bool, Error> {
        if due != WriteDue::Now {
            return Ok(false);
        }
        let version = match &self.written {
            Some((_, version)) => version.clone(),
            None => seen.md.resource_version(),
        };
        let transitions = events::for_transitions(&seen.md, self.holds(seen), status);
        let version = persist::write(seen, status, version, ctx).await?;
        self.queued.extend(with_status);
        self.queued.extend(transitions);
        self.written = Some((status.clone(), version));
        Ok(true)
    }

    /// Publishes every queued Event, once, at the end of the pass.
    pub async fn publish(self, seen: &Snapshot, ctx: &Context) {
        let regarding = seen.md.object_ref(&());
        events::publish(&ctx.client, &ctx.reporter, &regarding, self.queued).await;
    }
}

/// A changed status is due at once; an unchanged one never.
pub fn due_if_changed(
    stored: Option<&ModelDeploymentStatus>,
    status: &ModelDeploymentStatus,
) -> WriteDue {
    match stored == Some(status) {
        true => WriteDue::Never,
        false => WriteDue::Now,
    }
}

/// Counts revisions whose rollout ended, for `/metrics`, once their
/// outcome is written.
pub fn count_outcomes(outcomes: &[RevisionLabels], ctx: &Context) {
    for labels in outcomes {
        ctx.metrics.revision_outcomes.get_or_create(labels).inc();
    }
}

/// Hands the notifications `status` holds to the delivery tasks, and
/// firing alerts due a refresh; Events were already sent by the Degraded
/// condition's transition. Returns when a pass should look again for them.
pub fn deliver_alerts(
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
        format: channels
            .webhook
            .as_ref()
            .map(|w| w.format)
            .unwrap_or_default(),
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
pub fn count_dropped(channels: &[AlertChannel], ctx: &Context) {
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
