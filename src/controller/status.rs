//! Derives a ModelDeployment's status from what was observed. Pure: the
//! reconciler writes the result only when it differs from the stored status.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::conditions::{self, DEGRADED, PROGRESSING, READY, Verdict};
use crate::api::{
    AnalysisPhase, AnalysisStatus, FiringAlert, HistoryEntry, MetricCheck, ModelDeployment,
    ModelDeploymentStatus, Outcome, Phase, ServedVersion,
};
use crate::resources::{labels, service_url};
use crate::rollout::{Counts, Progress, progress};

/// Everything the status is a function of.
pub struct Observed<'a> {
    pub md: &'a ModelDeployment,
    pub served: &'a ServedVersion,
    /// The Deployment as last seen: the apply response when one was sent.
    pub deployment: Option<&'a Deployment>,
    /// Why the spec cannot be applied, when it cannot.
    pub invalid: Option<&'a str>,
    pub revisions: &'a Revisions,
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
        })
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
    let progress = observed.deployment.map(progress);
    let verdicts = [
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
    ModelDeploymentStatus {
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
        conditions: conditions::stamp(&verdicts, previous, md.metadata.generation, now),
    }
}

fn ready(exists: bool, n: Counts) -> Verdict {
    let summary = format!("{}/{} pods available", n.available, n.desired);
    if !exists {
        Verdict::new(
            READY,
            false,
            "Pending",
            "the model server Deployment does not exist yet",
        )
    } else if n.desired == 0 {
        Verdict::new(
            READY,
            false,
            "ScaledToZero",
            "replicas is 0: no pod serves the model",
        )
    } else if n.available >= n.desired {
        Verdict::new(READY, true, "Serving", summary)
    } else {
        Verdict::new(READY, false, "NotEnoughReplicas", summary)
    }
}

fn progressing(observed: &Observed<'_>, progress: Option<&Progress>) -> Verdict {
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
    if observed.invalid.is_some() {
        return Verdict::new(
            PROGRESSING,
            false,
            "InvalidSpec",
            "nothing rolls out until the spec is fixed",
        );
    }
    if let Some((failed, rolled_back)) = revisions.failure() {
        let reason = if rolled_back {
            "RolledBack"
        } else {
            "RolloutFailed"
        };
        let message = format!("{} failed: {}", describe(failed), failed.message);
        return Verdict::new(PROGRESSING, false, reason, message);
    }
    if let Some(halted) = revisions.halted() {
        return Verdict::new(
            PROGRESSING,
            false,
            "AnalysisInconclusive",
            format!("{target}: analysis {}", halted.message),
        );
    }
    if let Some(analysis) = revisions.analysing()
        && matches!(progress, Some(Progress::Complete))
    {
        return Verdict::new(
            PROGRESSING,
            true,
            "Analysing",
            format!("{target} is rolled out; analysis {}", analysis.message),
        );
    }
    if observed.md.spec.paused {
        return Verdict::new(
            PROGRESSING,
            false,
            "Paused",
            "spec.paused is true: spec changes wait until it is false",
        );
    }
    match progress {
        None => Verdict::new(
            PROGRESSING,
            true,
            "Creating",
            format!("creating the Deployment for {target}"),
        ),
        Some(Progress::NotObserved) => Verdict::new(
            PROGRESSING,
            true,
            "RolloutInProgress",
            format!("waiting for the Deployment controller to act on {target}"),
        ),
        Some(Progress::Rolling { updated, desired }) => Verdict::new(
            PROGRESSING,
            true,
            "RolloutInProgress",
            format!("{updated}/{desired} pods updated to {target}"),
        ),
        Some(Progress::Finishing {
            available,
            desired,
            total,
        }) => Verdict::new(
            PROGRESSING,
            true,
            "RolloutInProgress",
            format!("{available}/{desired} pods of {target} available, {total} pods in total"),
        ),
        Some(Progress::Complete) => Verdict::new(
            PROGRESSING,
            false,
            "RolloutComplete",
            format!("{target} is rolled out"),
        ),
        Some(Progress::DeadlineExceeded { message }) => Verdict::new(
            PROGRESSING,
            false,
            "ProgressDeadlineExceeded",
            message.clone(),
        ),
    }
}

fn degraded(observed: &Observed<'_>, progress: Option<&Progress>) -> Verdict {
    if let Some(cause) = observed.invalid {
        return Verdict::new(DEGRADED, true, "InvalidSpec", cause);
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
            return Verdict::new(DEGRADED, true, "RolledBack", message);
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
        return Verdict::new(DEGRADED, true, "RolloutFailed", message);
    }
    if let Some(Progress::DeadlineExceeded { message }) = progress {
        return Verdict::new(DEGRADED, true, "ProgressDeadlineExceeded", message.clone());
    }
    if let Some(halted) = revisions.halted() {
        let message = format!(
            "the rollout of revision {} stopped: {}",
            halted.revision, halted.message
        );
        return Verdict::new(DEGRADED, true, "AnalysisInconclusive", message);
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
        return Verdict::new(DEGRADED, true, "MetricBreach", message);
    }
    Verdict::new(DEGRADED, false, "AsExpected", "")
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
        None => Phase::Pending,
        Some(Progress::Complete) if observed.revisions.analysing().is_some() => Phase::Progressing,
        Some(Progress::Complete) => Phase::Healthy,
        Some(_) if n.available == 0 && n.desired > 0 => Phase::Pending,
        Some(_) => Phase::Progressing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Verdict;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn md(paused: bool) -> ModelDeployment {
        serde_json::from_value(json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "fraud", "namespace": "ml", "generation": 4},
            "spec": {"model": {"version": "2.1.0"}, "server": {"image": "srv:1"}, "paused": paused},
        }))
        .unwrap()
    }

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "fraud", "generation": 7},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn cond<'a>(s: &'a ModelDeploymentStatus, t: &str) -> (&'a str, &'a str) {
        let c = conditions::find(&s.conditions, t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn table() {
        let complete = deployment(
            json!({"observedGeneration": 7, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        let rolling = deployment(
            json!({"observedGeneration": 7, "replicas": 3, "readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2}),
        );
        let starting =
            deployment(json!({"observedGeneration": 7, "replicas": 2, "updatedReplicas": 2}));
        let stuck = deployment(
            json!({"observedGeneration": 7, "replicas": 2, "updatedReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}]}),
        );
        // (name, paused, deployment, invalid cause, phase, [Ready, Progressing, Degraded] as (status, reason))
        type Case<'a> = (
            &'a str,
            bool,
            Option<&'a Deployment>,
            Option<&'a str>,
            Phase,
            [(&'a str, &'a str); 3],
        );
        let cases: [Case; 7] = [
            (
                "nothing yet",
                false,
                None,
                None,
                Phase::Pending,
                [
                    ("False", "Pending"),
                    ("True", "Creating"),
                    ("False", "AsExpected"),
                ],
            ),
            (
                "healthy",
                false,
                Some(&complete),
                None,
                Phase::Healthy,
                [
                    ("True", "Serving"),
                    ("False", "RolloutComplete"),
                    ("False", "AsExpected"),
                ],
            ),
            (
                "rolling keeps serving",
                false,
                Some(&rolling),
                None,
                Phase::Progressing,
                [
                    ("True", "Serving"),
                    ("True", "RolloutInProgress"),
                    ("False", "AsExpected"),
                ],
            ),
            (
                "first pods starting",
                false,
                Some(&starting),
                None,
                Phase::Pending,
                [
                    ("False", "NotEnoughReplicas"),
                    ("True", "RolloutInProgress"),
                    ("False", "AsExpected"),
                ],
            ),
            (
                "deadline",
                false,
                Some(&stuck),
                None,
                Phase::Degraded,
                [
                    ("False", "NotEnoughReplicas"),
                    ("False", "ProgressDeadlineExceeded"),
                    ("True", "ProgressDeadlineExceeded"),
                ],
            ),
            (
                "invalid keeps old pods serving",
                false,
                Some(&complete),
                Some("bad quantity"),
                Phase::Degraded,
                [
                    ("True", "Serving"),
                    ("False", "InvalidSpec"),
                    ("True", "InvalidSpec"),
                ],
            ),
            (
                "paused",
                true,
                Some(&complete),
                None,
                Phase::Paused,
                [
                    ("True", "Serving"),
                    ("False", "Paused"),
                    ("False", "AsExpected"),
                ],
            ),
        ];
        for (name, paused, dep, invalid, want_phase, want) in cases {
            let md = md(paused);
            let served = ServedVersion::requested(&md);
            let status = derive(
                &Observed {
                    md: &md,
                    served: &served,
                    deployment: dep,
                    invalid,
                    revisions: &Revisions::default(),
                },
                &now(),
            );
            assert_eq!(status.phase, Some(want_phase), "{name}: phase");
            for ((t, _), w) in [(READY, 0), (PROGRESSING, 1), (DEGRADED, 2)]
                .iter()
                .zip(want)
            {
                assert_eq!(cond(&status, t), w, "{name}: {t}");
            }
            assert_eq!(status.observed_generation, Some(4), "{name}");
            assert!(
                status
                    .conditions
                    .iter()
                    .all(|c| c.observed_generation == Some(4)),
                "{name}"
            );
        }
    }

    #[test]
    fn fields_for_kubectl() {
        let md = md(false);
        let served = ServedVersion::requested(&md);
        let dep = deployment(
            json!({"observedGeneration": 7, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}),
        );
        let s = derive(
            &Observed {
                md: &md,
                served: &served,
                deployment: Some(&dep),
                invalid: None,
                revisions: &Revisions::default(),
            },
            &now(),
        );
        assert_eq!(s.ready_summary.as_deref(), Some("1/2"));
        assert_eq!(s.model.as_deref(), Some("fraud"));
        assert_eq!(s.url.as_deref(), Some("http://fraud.ml.svc:80"));
        assert_eq!(
            s.selector.as_deref(),
            Some("app.kubernetes.io/instance=fraud,app.kubernetes.io/managed-by=model-operator")
        );
    }

    #[test]
    fn unchanged_observation_gives_an_identical_status() {
        let mut md = md(false);
        let served = ServedVersion::requested(&md);
        let dep = deployment(
            json!({"observedGeneration": 7, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        let first = derive(
            &Observed {
                md: &md,
                served: &served,
                deployment: Some(&dep),
                invalid: None,
                revisions: &Revisions::default(),
            },
            &now(),
        );
        md.status = Some(first.clone());
        let later = Time(Timestamp::from_second(1_900_000_000).unwrap());
        let second = derive(
            &Observed {
                md: &md,
                served: &served,
                deployment: Some(&dep),
                invalid: None,
                revisions: &Revisions::default(),
            },
            &later,
        );
        assert_eq!(
            first, second,
            "a later resync must not produce a status write"
        );
    }

    #[test]
    fn a_rolled_back_revision_is_explained_in_every_condition() {
        let md = md(false);
        let served = ServedVersion::requested(&md);
        let dep = deployment(
            json!({"observedGeneration": 7, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        let entry = |revision: i64, version: &str, outcome: Outcome, message: &str| HistoryEntry {
            revision,
            model_version: version.into(),
            outcome,
            message: message.into(),
            ..HistoryEntry::default()
        };
        let revisions = Revisions {
            requested: Some(4),
            current: Some(3),
            stable: Some(3),
            history: vec![
                entry(3, "2.0.1", Outcome::Stable, ""),
                entry(
                    4,
                    "2.1.0",
                    Outcome::RolledBack,
                    "2/2 new pods in CrashLoopBackOff",
                ),
            ],
            ..Revisions::default()
        };
        let observed = Observed {
            md: &md,
            served: &served,
            deployment: Some(&dep),
            invalid: None,
            revisions: &revisions,
        };
        let s = derive(&observed, &now());
        assert_eq!(s.phase, Some(Phase::RolledBack));
        assert_eq!(cond(&s, READY), ("True", "Serving"));
        assert_eq!(cond(&s, PROGRESSING), ("False", "RolledBack"));
        assert_eq!(cond(&s, DEGRADED), ("True", "RolledBack"));
        let message = &conditions::find(&s.conditions, DEGRADED).unwrap().message;
        assert_eq!(
            message,
            "serving revision 3 (model 2.0.1); revision 4 (model 2.1.0) rolled back: 2/2 new pods in CrashLoopBackOff"
        );
        assert_eq!(
            (s.current_revision, s.stable_revision, s.update_revision),
            (Some(3), Some(3), Some(4))
        );
    }

    #[test]
    fn metric_analysis_shows_in_phase_and_conditions() {
        let mut md = md(false);
        md.spec.rollout.analysis = Some(
            serde_json::from_value(json!({
                "prometheus": {"address": "http://127.0.0.1:9090"},
                "failureLimit": 1,
                "metrics": [{"name": "error-rate", "query": "q", "max": 0.05}],
            }))
            .unwrap(),
        );
        let served = ServedVersion::requested(&md);
        let complete = deployment(
            json!({"observedGeneration": 7, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        let entry = |revision: i64, outcome: Outcome| HistoryEntry {
            revision,
            model_version: format!("{revision}.0"),
            outcome,
            ..HistoryEntry::default()
        };
        let analysis = |phase: AnalysisPhase, failed: i32| AnalysisStatus {
            revision: 2,
            phase,
            message: "the analysis says".into(),
            metrics: vec![MetricCheck {
                name: "error-rate".into(),
                verdict: if failed > 0 {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                },
                message: "0.2 is above 0.05".into(),
                failed,
                ..MetricCheck::default()
            }],
            ..AnalysisStatus::default()
        };
        let rolling = |phase| Revisions {
            requested: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![entry(1, Outcome::Stable), entry(2, Outcome::Progressing)],
            analysis: Some(analysis(phase, 0)),
            alerts: Vec::new(),
        };
        let guarded = |failed| Revisions {
            requested: Some(2),
            current: Some(2),
            stable: Some(2),
            history: vec![entry(1, Outcome::Superseded), entry(2, Outcome::Stable)],
            analysis: Some(analysis(AnalysisPhase::Guarding, failed)),
            alerts: Vec::new(),
        };
        let cases = [
            (
                "baking",
                rolling(AnalysisPhase::Baking),
                Phase::Progressing,
                ("True", "Analysing"),
                ("False", "AsExpected"),
            ),
            (
                "stopped",
                rolling(AnalysisPhase::Inconclusive),
                Phase::Paused,
                ("False", "AnalysisInconclusive"),
                ("True", "AnalysisInconclusive"),
            ),
            (
                "guarded, in bounds",
                guarded(1),
                Phase::Healthy,
                ("False", "RolloutComplete"),
                ("False", "AsExpected"),
            ),
            (
                "guarded, breach",
                guarded(2),
                Phase::Degraded,
                ("False", "RolloutComplete"),
                ("True", "MetricBreach"),
            ),
        ];
        for (name, revisions, phase, progressing, degraded) in cases {
            let observed = Observed {
                md: &md,
                served: &served,
                deployment: Some(&complete),
                invalid: None,
                revisions: &revisions,
            };
            let s = derive(&observed, &now());
            assert_eq!(s.phase, Some(phase), "{name}");
            assert_eq!(cond(&s, PROGRESSING), progressing, "{name}");
            assert_eq!(cond(&s, DEGRADED), degraded, "{name}");
        }
    }
}
