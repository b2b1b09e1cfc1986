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

/// Status derived from the Deployment alone: a valid spec, no revisions
/// recorded yet.
fn derive_from(
    md: &ModelDeployment,
    served: &ServedVersion,
    dep: &Deployment,
    at: &Time,
) -> ModelDeploymentStatus {
    derive_at(md, served, dep, &Revisions::default(), at)
}

/// Status derived from the Deployment and these revisions, for a valid
/// spec.
fn derive_with(
    md: &ModelDeployment,
    served: &ServedVersion,
    dep: &Deployment,
    revisions: &Revisions,
) -> ModelDeploymentStatus {
    derive_at(md, served, dep, revisions, &now())
}

fn derive_at(
    md: &ModelDeployment,
    served: &ServedVersion,
    dep: &Deployment,
    revisions: &Revisions,
    at: &Time,
) -> ModelDeploymentStatus {
    let observed = Observed {
        md,
        served,
        deployment: Some(dep),
        invalid: None,
        revisions,
        template_pending: false,
    };
    derive(&observed, at)
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
        Option<Blocker>,
        Phase,
        [(&'a str, &'a str); 3],
    );
    let cases: [Case; 8] = [
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
            Some(Blocker::invalid("bad quantity")),
            Phase::Degraded,
            [
                ("True", "Serving"),
                ("False", "InvalidSpec"),
                ("True", "InvalidSpec"),
            ],
        ),
        (
            "a name conflict keeps old pods serving",
            false,
            Some(&complete),
            Some(Blocker {
                reason: reasons::NAME_CONFLICT,
                message: "Service ns/x exists and is not owned by this ModelDeployment".into(),
            }),
            Phase::Degraded,
            [
                ("True", "Serving"),
                ("False", "NameConflict"),
                ("True", "NameConflict"),
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
                invalid: invalid.as_ref(),
                revisions: &Revisions::default(),
                template_pending: false,
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
    let s = derive_from(&md, &served, &dep, &now());
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
    let first = derive_from(&md, &served, &dep, &now());
    md.status = Some(first.clone());
    let later = Time(Timestamp::from_second(1_900_000_000).unwrap());
    let second = derive_from(&md, &served, &dep, &later);
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
    let s = derive_with(&md, &served, &dep, &revisions);
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
        alert_outbox: Vec::new(),
        canary: None,
        unschedulable: None,
    };
    let guarded = |failed| Revisions {
        requested: Some(2),
        current: Some(2),
        stable: Some(2),
        history: vec![entry(1, Outcome::Superseded), entry(2, Outcome::Stable)],
        analysis: Some(analysis(AnalysisPhase::Guarding, failed)),
        alerts: Vec::new(),
        alert_outbox: Vec::new(),
        canary: None,
        unschedulable: None,
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
            template_pending: false,
        };
        let s = derive(&observed, &now());
        assert_eq!(s.phase, Some(phase), "{name}");
        assert_eq!(cond(&s, PROGRESSING), progressing, "{name}");
        assert_eq!(cond(&s, DEGRADED), degraded, "{name}");
    }
}

#[test]
fn at_zero_replicas_a_judged_revision_is_healthy_and_a_new_one_waits_for_pods() {
    let md = md(false);
    let served = ServedVersion::requested(&md);
    let mut dep = deployment(json!({"observedGeneration": 7}));
    dep.spec.as_mut().unwrap().replicas = Some(0);
    let entry = |revision: i64, outcome: Outcome| HistoryEntry {
        revision,
        model_version: format!("2.{revision}.0"),
        outcome,
        ..HistoryEntry::default()
    };
    // (name, history, phase, Progressing)
    let cases = [
        (
            "stable at zero",
            vec![entry(3, Outcome::Stable)],
            Phase::Healthy,
            ("False", "RolloutComplete"),
        ),
        (
            "new revision at zero",
            vec![entry(2, Outcome::Stable), entry(3, Outcome::Progressing)],
            Phase::Progressing,
            ("True", "ScaledToZero"),
        ),
    ];
    for (name, history, phase, progressing) in cases {
        let revisions = Revisions {
            requested: Some(3),
            current: Some(3),
            stable: history
                .iter()
                .find(|e| e.outcome == Outcome::Stable)
                .map(|e| e.revision),
            history,
            ..Revisions::default()
        };
        let s = derive_with(&md, &served, &dep, &revisions);
        assert_eq!(s.phase, Some(phase), "{name}");
        assert_eq!(cond(&s, READY), ("False", "ScaledToZero"), "{name}");
        assert_eq!(cond(&s, PROGRESSING), progressing, "{name}");
        assert_eq!(cond(&s, DEGRADED), ("False", "AsExpected"), "{name}");
    }
}

#[test]
fn pods_without_a_node_are_named_with_when_the_wait_ends() {
    let md = md(false);
    let served = ServedVersion::requested(&md);
    let dep = deployment(
        json!({"observedGeneration": 7, "replicas": 3, "updatedReplicas": 1,
        "readyReplicas": 2, "availableReplicas": 2}),
    );
    let waiting = |since: Option<Time>| {
        Revisions {
        requested: Some(2),
        current: Some(2),
        stable: Some(1),
        history: vec![
            HistoryEntry {
                revision: 1,
                outcome: Outcome::Stable,
                ..HistoryEntry::default()
            },
            HistoryEntry {
                revision: 2,
                outcome: Outcome::Progressing,
                ..HistoryEntry::default()
            },
        ],
        unschedulable: Some(UnschedulableStatus {
            revision: 2,
            pods: 1,
            reason: "InsufficientCapacity".into(),
            resources: vec!["nvidia.com/gpu".into()],
            message: "1/1 pods of revision 2 cannot be scheduled: not enough nvidia.com/gpu on the 1 node that matches them".into(),
            since,
        }),
        ..Revisions::default()
    }
    };

    let stuck = derive_with(&md, &served, &dep, &waiting(Some(now())));
    assert_eq!(cond(&stuck, "Progressing"), ("True", "PodsUnschedulable"));
    assert_eq!(
        conditions::find(&stuck.conditions, "Progressing")
            .unwrap()
            .message,
        "1/1 pods of revision 2 cannot be scheduled: not enough nvidia.com/gpu on the 1 node that matches them; nothing else can roll out: the revision fails (InsufficientCapacity) at 2027-01-15T08:00:10Z unless they get a node"
    );
    assert_eq!(stuck.phase, Some(Phase::Progressing));
    assert_eq!(cond(&stuck, "Degraded"), ("False", "AsExpected"));
    assert_eq!(stuck.unschedulable.as_ref().map(|u| u.pods), Some(1));

    let mut paused = md.clone();
    paused.spec.paused = true;
    let held = derive_with(&paused, &served, &dep, &waiting(Some(now())));
    assert_eq!(cond(&held, "Progressing"), ("False", "Paused"));
    assert_eq!(
        conditions::find(&held.conditions, "Progressing")
            .unwrap()
            .message,
        "spec.paused is true: spec changes wait until it is false, and no revision fails meanwhile; 1/1 pods of revision 2 cannot be scheduled: not enough nvidia.com/gpu on the 1 node that matches them"
    );

    let moving = derive_with(&md, &served, &dep, &waiting(None));
    assert!(
        conditions::find(&moving.conditions, "Progressing")
            .unwrap()
            .message
            .ends_with("; the rollout still moves (pods terminating or becoming available)")
    );
}
