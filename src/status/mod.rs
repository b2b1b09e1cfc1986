//! Derives a ModelDeployment's status from what was observed. Pure: the
//! reconciler writes the result only when it differs from the stored status.

pub mod conditions;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::{
    AlertNotification, AnalysisPhase, AnalysisStatus, CanaryStatus, FiringAlert, HistoryEntry,
    MetricCheck, ModelDeployment, ModelDeploymentStatus, Outcome, Phase, ServedVersion,
    UnschedulableStatus,
};
use crate::reasons;
use crate::resources::{labels, service_url};
use crate::rollout::{Counts, Progress, progress};
use conditions::{DEGRADED, Draft, PROGRESSING, READY};

/// Everything the status is a function of.
pub struct Observed<'a> {
    pub md: &'a ModelDeployment,
    pub served: &'a ServedVersion,
    /// The Deployment as last seen: the apply response when one was sent.
    pub deployment: Option<&'a Deployment>,
    /// Why nothing rolls out until the user acts, when that is so.
    pub invalid: Option<&'a Blocker>,
    pub revisions: &'a Revisions,
    /// The Deployment is about to get another template (a decision written
    /// before it is carried out): its progress is not known yet.
    pub template_pending: bool,
}

/// Why nothing rolls out until the user acts: a spec the operator cannot
/// run, a child the API server refused, or a child's name taken by an
/// object this ModelDeployment does not own.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocker {
    /// The Degraded condition's reason (`crate::reasons`).
    pub reason: &'static str,
    pub message: String,
}

impl Blocker {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            reason: reasons::INVALID_SPEC,
            message: message.into(),
        }
    }

    /// What the Progressing condition says meanwhile.
    fn waits_for(&self) -> &'static str {
        match self.reason {
            reasons::NAME_CONFLICT => "nothing rolls out until the name conflict is resolved",
            _ => "nothing rolls out until the spec is fixed",
        }
    }
}

/// The revision bookkeeping, as decided for this reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Revisions {
    /// What the spec asks for (`None` while the spec is invalid and no
    /// revision was ever recorded).
    pub requested: Option<i64>,
    /// What the Deployment runs.
    pub current: Option<i64>,
    pub stable: Option<i64>,
    pub history: Vec<HistoryEntry>,
    /// The analysis of the revision being rolled out or guarded.
    pub analysis: Option<AnalysisStatus>,
    /// Alerts firing.
    pub alerts: Vec<FiringAlert>,
    /// Alert notifications a channel has yet to confirm.
    pub alert_outbox: Vec<AlertNotification>,
    /// The canary of the revision rolling out (Canary strategy).
    pub canary: Option<CanaryStatus>,
    /// Pods of the revision rolling out without a node.
    pub unschedulable: Option<UnschedulableStatus>,
}

impl Revisions {
    /// As the stored status has them.
    pub fn from_status(status: Option<&ModelDeploymentStatus>) -> Self {
        status.map_or_else(Self::default, |s| Self {
            requested: s.update_revision,
            current: s.current_revision,
            stable: s.stable_revision,
            history: s.history.clone(),
            analysis: s.analysis.clone(),
            alerts: s.alerts.clone(),
            alert_outbox: s.alert_outbox.clone(),
            canary: s.canary.clone(),
            unschedulable: s.unschedulable.clone(),
        })
    }

    /// The canary of the revision rolling out, while it rolls out.
    fn running_canary(&self) -> Option<&CanaryStatus> {
        crate::rollout::canary::running(self.canary.as_ref(), self.current, &self.history)
    }

    /// The revision the Deployment runs has not been judged yet (scaled to
    /// zero, it waits for pods to roll out on).
    fn current_unjudged(&self) -> bool {
        self.entry(self.current)
            .is_none_or(|e| e.outcome == Outcome::Progressing)
    }

    fn entry(&self, revision: Option<i64>) -> Option<&HistoryEntry> {
        let revision = revision?;
        self.history.iter().find(|e| e.revision == revision)
    }

    /// The analysis of the revision the Deployment runs.
    fn running_analysis(&self) -> Option<&AnalysisStatus> {
        self.analysis
            .as_ref()
            .filter(|a| Some(a.revision) == self.current)
    }

    /// An analysis that stopped for lack of answers: it waits for a person.
    fn halted(&self) -> Option<&AnalysisStatus> {
        self.running_analysis()
            .filter(|a| a.phase == AnalysisPhase::Inconclusive)
    }

    /// A rollout analysis still deciding about the running revision.
    fn analysing(&self) -> Option<&AnalysisStatus> {
        let running = self.entry(self.current)?;
        self.running_analysis().filter(|a| {
            running.outcome == Outcome::Progressing
                && matches!(a.phase, AnalysisPhase::Running | AnalysisPhase::Baking)
        })
    }

    /// The requested revision's failure, when it failed and is not running.
    fn failure(&self) -> Option<(&HistoryEntry, bool)> {
        let requested = self.entry(self.requested)?;
        match requested.outcome {
            Outcome::RolledBack if self.current != self.requested => Some((requested, true)),
            Outcome::Failed => Some((requested, false)),
            _ => None,
        }
    }
}

/// The first metric of the guarded Stable revision out of bounds for more
/// than `failureLimit` checks in a row.
fn breach<'a>(observed: &'a Observed<'_>) -> Option<&'a MetricCheck> {
    let limit = observed.md.spec.rollout.analysis.as_ref()?.failure_limit;
    observed
        .revisions
        .running_analysis()
        .filter(|a| a.phase == AnalysisPhase::Guarding)?
        .metrics
        .iter()
        .find(|m| m.failed > limit)
}

fn describe(entry: &HistoryEntry) -> String {
    format!(
        "revision {} (model {})",
        entry.revision, entry.model_version
    )
}

pub fn derive(observed: &Observed<'_>, now: &Time) -> ModelDeploymentStatus {
    let md = observed.md;
    let counts = observed.deployment.map(Counts::of).unwrap_or_default();
    let progress = observed
        .deployment
        .map(|d| match observed.template_pending {
            true => Progress::NotObserved,
            false => progress(d),
        });
    let drafts = [
        ready(observed.deployment.is_some(), counts),
        progressing(observed, progress.as_ref()),
        degraded(observed, progress.as_ref()),
    ];
    let revisions = observed.revisions;
    let previous = md
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    bounded::bound(ModelDeploymentStatus {
        observed_generation: md.metadata.generation,
        phase: Some(phase(observed, progress.as_ref(), counts)),
        model: Some(observed.served.model_name().to_string()),
        replicas: counts.replicas,
        ready_replicas: counts.ready,
        updated_replicas: counts.updated,
        available_replicas: counts.available,
        ready_summary: Some(format!("{}/{}", counts.ready, counts.desired)),
        selector: Some(labels::to_selector_string(&labels::selector(
            &md.name_any(),
        ))),
        url: Some(service_url(md)),
        current_revision: revisions.current,
        stable_revision: revisions.stable,
        update_revision: revisions.requested,
        history: revisions.history.clone(),
        analysis: revisions.analysis.clone(),
        alerts: revisions.alerts.clone(),
        alert_outbox: revisions.alert_outbox.clone(),
        canary: revisions.canary.clone(),
        unschedulable: revisions.unschedulable.clone(),
        conditions: conditions::stamp(&drafts, previous, md.metadata.generation, now),
    })
}

fn ready(exists: bool, n: Counts) -> Draft {
    let summary = format!("{}/{} pods available", n.available, n.desired);
    if !exists {
        Draft::new(
            READY,
            false,
            reasons::PENDING,
            "the model server Deployment does not exist yet",
        )
    } else if n.desired == 0 {
        Draft::new(
            READY,
            false,
            reasons::SCALED_TO_ZERO,
            "replicas is 0: no pod serves the model",
        )
    } else if n.available >= n.desired {
        Draft::new(READY, true, reasons::SERVING, summary)
    } else {
        Draft::new(READY, false, reasons::NOT_ENOUGH_REPLICAS, summary)
    }
}

fn progressing(observed: &Observed<'_>, progress: Option<&Progress>) -> Draft {
    // Name what the Deployment runs: during a rollback that is the stable
    // revision, not the version the spec asks for.
    let revisions = observed.revisions;
    let target = match revisions.entry(revisions.current) {
        Some(running) => describe(running),
        None => format!(
            "model {} {}",
            observed.served.model_name(),
            observed.served.model.version
        ),
    };
    if let Some(blocker) = observed.invalid {
        return Draft::new(PROGRESSING, false, blocker.reason, blocker.waits_for());
    }
    if let Some((failed, rolled_back)) = revisions.failure() {
        let reason = if rolled_back {
            reasons::ROLLED_BACK
        } else {
            reasons::ROLLOUT_FAILED
        };
        let message = format!("{} failed: {}", describe(failed), failed.message);
        return Draft::new(PROGRESSING, false, reason, message);
    }
    if let Some(halted) = revisions.halted() {
        return Draft::new(
            PROGRESSING,
            false,
            reasons::ANALYSIS_INCONCLUSIVE,
            format!("{target}: analysis {}", halted.message),
        );
    }
    if let Some(unschedulable) = revisions.unschedulable.as_ref() {
        // Paused, nothing is judged: no revision fails at the grace's end.
        if observed.md.spec.paused {
            return Draft::new(
                PROGRESSING,
                false,
                reasons::PAUSED,
                format!(
                    "spec.paused is true: spec changes wait until it is false, and no revision fails meanwhile; {}",
                    unschedulable.message
                ),
            );
        }
        let grace = observed.md.spec.rollout.capacity_grace_seconds;
        return Draft::new(
            PROGRESSING,
            true,
            reasons::PODS_UNSCHEDULABLE,
            unschedulable_message(unschedulable, grace),
        );
    }
    if let Some(canary) = revisions.running_canary() {
        let reason = match canary.waiting_for_promotion {
            true => reasons::CANARY_PAUSED,
            false => reasons::CANARY_STEP,
        };
        let analysis = revisions
            .analysing()
            .map(|a| format!("; analysis {}", a.message))
            .unwrap_or_default();
        return Draft::new(
            PROGRESSING,
            true,
            reason,
            format!("{}{analysis}", canary.summary),
        );
    }
    if let Some(analysis) = revisions.analysing()
        && matches!(progress, Some(Progress::Complete))
    {
        return Draft::new(
            PROGRESSING,
            true,
            reasons::ANALYSING,
            format!("{target} is rolled out; analysis {}", analysis.message),
        );
    }
    if observed.md.spec.paused {
        return Draft::new(
            PROGRESSING,
            false,
            reasons::PAUSED,
            "spec.paused is true: spec changes wait until it is false",
        );
    }
    if matches!(progress, Some(Progress::ScaledToZero)) && observed.revisions.current_unjudged() {
        return Draft::new(
            PROGRESSING,
            true,
            reasons::SCALED_TO_ZERO,
            format!(
                "{target} waits for pods: replicas is 0; it rolls out, and is judged, once the model is scaled up"
            ),
        );
    }
    rolling(progress, &target)
}

/// What waits for a node, and when the wait ends.
fn unschedulable_message(u: &UnschedulableStatus, grace_seconds: i32) -> String {
    let ends = u.since.as_ref().and_then(|since| {
        since
            .0
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
                grace_seconds.into(),
            ))
            .ok()
    });
    match ends {
        Some(ends) => format!(
            "{}; nothing else can roll out: the revision fails ({}) at {ends} unless they get a node",
            u.message, u.reason
        ),
        None => format!(
            "{}; the rollout still moves (pods terminating or becoming available)",
            u.message
        ),
    }
}

/// Progressing while nothing stopped the rollout: how far the Deployment
/// got with `target`.
fn rolling(progress: Option<&Progress>, target: &str) -> Draft {
    match progress {
        None => Draft::new(
            PROGRESSING,
            true,
            reasons::CREATING,
            format!("creating the Deployment for {target}"),
        ),
        Some(Progress::NotObserved) => Draft::new(
            PROGRESSING,
            true,
            reasons::ROLLOUT_IN_PROGRESS,
            format!("waiting for the Deployment controller to act on {target}"),
        ),
        Some(Progress::Rolling { updated, desired }) => Draft::new(
            PROGRESSING,
            true,
            reasons::ROLLOUT_IN_PROGRESS,
            format!("{updated}/{desired} pods updated to {target}"),
        ),
        Some(Progress::Finishing {
            available,
            desired,
            total,
        }) => Draft::new(
            PROGRESSING,
            true,
            reasons::ROLLOUT_IN_PROGRESS,
            format!("{available}/{desired} pods of {target} available, {total} pods in total"),
        ),
        Some(Progress::Complete) => Draft::new(
            PROGRESSING,
            false,
            reasons::ROLLOUT_COMPLETE,
            format!("{target} is rolled out"),
        ),
        Some(Progress::ScaledToZero) => Draft::new(
            PROGRESSING,
            false,
            reasons::ROLLOUT_COMPLETE,
            format!("{target} is rolled out and scaled to zero"),
        ),
        Some(Progress::DeadlineExceeded { message }) => Draft::new(
            PROGRESSING,
            false,
            reasons::PROGRESS_DEADLINE_EXCEEDED,
            message.clone(),
        ),
    }
}

fn degraded(observed: &Observed<'_>, progress: Option<&Progress>) -> Draft {
    if let Some(blocker) = observed.invalid {
        return Draft::new(DEGRADED, true, blocker.reason, blocker.message.as_str());
    }
    let revisions = observed.revisions;
    if let Some((failed, rolled_back)) = revisions.failure() {
        if rolled_back {
            let serving = revisions
                .entry(revisions.current)
                .map_or_else(|| "the stable revision".to_string(), describe);
            let message = format!(
                "serving {serving}; {} rolled back: {}",
                describe(failed),
                failed.message
            );
            return Draft::new(DEGRADED, true, reasons::ROLLED_BACK, message);
        }
        let why = if revisions
            .stable
            .is_some_and(|s| Some(s) != revisions.requested)
        {
            "automatic rollback is off"
        } else {
            "no stable revision to roll back to"
        };
        let message = format!("{} failed: {}; {why}", describe(failed), failed.message);
        return Draft::new(DEGRADED, true, reasons::ROLLOUT_FAILED, message);
    }
    if let Some(Progress::DeadlineExceeded { message }) = progress {
        return Draft::new(
            DEGRADED,
            true,
            reasons::PROGRESS_DEADLINE_EXCEEDED,
            message.clone(),
        );
    }
    if let Some(halted) = revisions.halted() {
        let message = format!(
            "the rollout of revision {} stopped: {}",
            halted.revision, halted.message
        );
        return Draft::new(DEGRADED, true, reasons::ANALYSIS_INCONCLUSIVE, message);
    }
    if let Some(metric) = breach(observed) {
        let message = format!(
            "stable revision {} breaches metric {}: {}; bound {}; query: {}",
            revisions.current.unwrap_or_default(),
            metric.name,
            metric.message,
            metric.bound,
            metric.query
        );
        return Draft::new(DEGRADED, true, reasons::METRIC_BREACH, message);
    }
    Draft::new(DEGRADED, false, reasons::AS_EXPECTED, "")
}

fn phase(observed: &Observed<'_>, progress: Option<&Progress>, n: Counts) -> Phase {
    match progress {
        _ if observed.invalid.is_some() => Phase::Degraded,
        _ if observed
            .revisions
            .failure()
            .is_some_and(|(_, rolled_back)| rolled_back) =>
        {
            Phase::RolledBack
        }
        _ if observed.revisions.failure().is_some() => Phase::Degraded,
        Some(Progress::DeadlineExceeded { .. }) => Phase::Degraded,
        _ if observed.revisions.halted().is_some() => Phase::Paused,
        _ if breach(observed).is_some() => Phase::Degraded,
        _ if observed.md.spec.paused => Phase::Paused,
        Some(_) if observed.revisions.running_canary().is_some() => Phase::Progressing,
        None => Phase::Pending,
        Some(Progress::Complete) if observed.revisions.analysing().is_some() => Phase::Progressing,
        Some(Progress::Complete) => Phase::Healthy,
        // Nothing serves, and nothing is wrong: the spec asks for no pod.
        Some(Progress::ScaledToZero) if !observed.revisions.current_unjudged() => Phase::Healthy,
        Some(_) if n.available == 0 && n.desired > 0 => Phase::Pending,
        Some(_) => Phase::Progressing,
    }
}

pub mod bounded;

#[cfg(test)]
mod tests;
