use super::*;

fn e(revision: i64, outcome: Outcome) -> HistoryEntry {
    HistoryEntry {
        revision,
        outcome,
        model_version: format!("v{revision}"),
        image: "srv".into(),
        ..HistoryEntry::default()
    }
}

fn metric() -> Failure {
    Failure {
        reason: "AnalysisFailed",
        message: "metric error-rate failed 1 checks".into(),
    }
}

fn crash() -> Failure {
    Failure {
        reason: "CrashLoopBackOff",
        message: "2/2 new pods in CrashLoopBackOff".into(),
    }
}

struct Case {
    name: &'static str,
    requested: i64,
    previous_update: Option<i64>,
    current: Option<i64>,
    stable: Option<i64>,
    history: Vec<HistoryEntry>,
    paused: bool,
    auto_rollback: bool,
    retry: Option<&'static str>,
    health: Health,
    analysis: Gate,
    breach: Option<Breach>,
    want_target: i64,
    want_stable: Option<i64>,
    want_changes: Vec<Change>,
}

fn base(name: &'static str) -> Case {
    Case {
        name,
        requested: 1,
        previous_update: None,
        current: None,
        stable: None,
        history: vec![],
        paused: false,
        auto_rollback: true,
        retry: None,
        health: Health::Rolling,
        analysis: Gate::Passed,
        breach: None,
        want_target: 1,
        want_stable: None,
        want_changes: vec![],
    }
}

fn fail(revision: i64, replaced_by: Option<i64>) -> Change {
    Change::Fail {
        revision,
        replaced_by,
        failure: crash(),
    }
}

#[test]
fn table() {
    use Change::*;
    let cases = vec![
        Case {
            want_changes: vec![Start { revision: 1 }],
            ..base("first revision starts")
        },
        Case {
            current: Some(1),
            previous_update: Some(1),
            history: vec![e(1, Outcome::Progressing)],
            ..base("first revision still rolling")
        },
        Case {
            current: Some(1),
            want_changes: vec![Start { revision: 1 }],
            ..base("first revision running but never written (crash after acting): started now")
        },
        Case {
            current: Some(1),
            health: Health::Complete,
            want_stable: Some(1),
            want_changes: vec![Start { revision: 1 }, Succeed { revision: 1 }],
            ..base("first revision never written and already complete: started, then passes")
        },
        Case {
            current: Some(1),
            previous_update: Some(1),
            history: vec![e(1, Outcome::Progressing)],
            health: Health::Complete,
            want_stable: Some(1),
            want_changes: vec![Succeed { revision: 1 }],
            ..base("first revision passes")
        },
        Case {
            current: Some(1),
            previous_update: Some(1),
            history: vec![e(1, Outcome::Progressing)],
            health: Health::Failed(crash()),
            want_changes: vec![fail(1, None)],
            ..base("first revision fails: nothing to go back to")
        },
        Case {
            current: Some(1),
            previous_update: Some(1),
            history: vec![e(1, Outcome::Failed)],
            health: Health::Failed(crash()),
            ..base("a failed first revision does not flap")
        },
        Case {
            requested: 2,
            previous_update: Some(1),
            current: Some(1),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable)],
            health: Health::Complete,
            want_target: 2,
            want_stable: Some(1),
            want_changes: vec![Start { revision: 2 }],
            ..base("new version starts from a stable one")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            health: Health::Complete,
            want_target: 2,
            want_stable: Some(2),
            want_changes: vec![Succeed { revision: 2 }, Supersede { revision: 1, by: 2 }],
            ..base("good version becomes stable")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            health: Health::Failed(crash()),
            want_target: 1,
            want_stable: Some(1),
            want_changes: vec![fail(2, Some(1))],
            ..base("good to bad rolls back")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(1),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::RolledBack)],
            health: Health::Complete,
            want_target: 1,
            want_stable: Some(1),
            ..base("no retry loop: the failed revision stays rolled back")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(1),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::RolledBack)],
            retry: Some("try-again"),
            health: Health::Complete,
            want_target: 2,
            want_stable: Some(1),
            want_changes: vec![Start { revision: 2 }],
            ..base("a new retry token retries")
        },
        Case {
            requested: 2,
            previous_update: Some(1),
            current: Some(1),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::RolledBack)],
            health: Health::Complete,
            want_target: 2,
            want_stable: Some(1),
            want_changes: vec![Start { revision: 2 }],
            ..base("the spec moved away and came back: retried")
        },
        Case {
            requested: 3,
            previous_update: Some(2),
            current: Some(1),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::RolledBack)],
            health: Health::Complete,
            want_target: 3,
            want_stable: Some(1),
            want_changes: vec![Start { revision: 3 }],
            ..base("bad to next version starts it")
        },
        Case {
            requested: 3,
            previous_update: Some(3),
            current: Some(3),
            stable: Some(1),
            history: vec![
                e(1, Outcome::Stable),
                e(2, Outcome::RolledBack),
                e(3, Outcome::Progressing),
            ],
            health: Health::Failed(crash()),
            want_target: 1,
            want_stable: Some(1),
            want_changes: vec![fail(3, Some(1))],
            ..base("bad to bad goes back to the original stable")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            auto_rollback: false,
            health: Health::Failed(crash()),
            want_target: 2,
            want_stable: Some(1),
            want_changes: vec![fail(2, None)],
            ..base("automatic rollback off: stays, marked failed")
        },
        Case {
            requested: 1,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(2),
            history: vec![e(1, Outcome::Superseded), e(2, Outcome::Stable)],
            want_target: 1,
            want_stable: Some(2),
            want_changes: vec![Start { revision: 1 }],
            ..base("back to a known-good revision reuses it")
        },
        Case {
            requested: 3,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            want_target: 3,
            want_stable: Some(1),
            want_changes: vec![Supersede { revision: 2, by: 3 }, Start { revision: 3 }],
            ..base("a newer spec supersedes an unfinished rollout")
        },
        Case {
            requested: 3,
            previous_update: Some(3),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            health: Health::Failed(crash()),
            paused: true,
            want_target: 2,
            want_stable: Some(1),
            ..base("paused holds what runs, even a failing rollout")
        },
        Case {
            requested: 2,
            paused: true,
            want_target: 2,
            want_changes: vec![Start { revision: 2 }],
            ..base("paused with nothing running still creates")
        },
        Case {
            requested: 1,
            previous_update: Some(1),
            current: Some(1),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable)],
            health: Health::Failed(crash()),
            want_target: 1,
            want_stable: Some(1),
            ..base("a stable revision is not judged by rollout health")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            health: Health::Complete,
            analysis: Gate::Pending,
            want_target: 2,
            want_stable: Some(1),
            ..base("healthy but still analysing: not promoted yet")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            health: Health::Complete,
            analysis: Gate::Halted("no data".into()),
            want_target: 2,
            want_stable: Some(1),
            ..base("an inconclusive analysis holds: neither promoted nor rolled back")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            health: Health::Complete,
            analysis: Gate::Passed,
            want_target: 2,
            want_stable: Some(2),
            want_changes: vec![Succeed { revision: 2 }, Supersede { revision: 1, by: 2 }],
            ..base("healthy and every gate passed: promoted")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::Progressing)],
            health: Health::Rolling,
            analysis: Gate::Failed(metric()),
            want_target: 1,
            want_stable: Some(1),
            want_changes: vec![Fail {
                revision: 2,
                replaced_by: Some(1),
                failure: metric(),
            }],
            ..base("a failed metric gate rolls back, even before every pod is updated")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(2),
            history: vec![e(1, Outcome::Superseded), e(2, Outcome::Stable)],
            breach: Some(Breach {
                failure: metric(),
                previous_stable: Some(1),
            }),
            want_target: 1,
            want_stable: Some(1),
            want_changes: vec![
                Reinstate {
                    revision: 1,
                    after: 2,
                },
                Fail {
                    revision: 2,
                    replaced_by: Some(1),
                    failure: metric(),
                },
            ],
            ..base("a post-promotion breach goes back to the previous stable revision")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(2),
            history: vec![e(2, Outcome::Stable)],
            breach: Some(Breach {
                failure: metric(),
                previous_stable: None,
            }),
            want_target: 2,
            want_stable: Some(2),
            ..base("a breach with nothing before it is only reported")
        },
        Case {
            requested: 3,
            previous_update: Some(2),
            current: Some(2),
            stable: Some(2),
            history: vec![e(1, Outcome::Superseded), e(2, Outcome::Stable)],
            breach: Some(Breach {
                failure: metric(),
                previous_stable: Some(1),
            }),
            want_target: 3,
            want_stable: Some(2),
            want_changes: vec![Start { revision: 3 }],
            ..base("a breach gives way to a newer version the spec asks for")
        },
        Case {
            requested: 2,
            previous_update: Some(2),
            current: Some(1),
            stable: Some(1),
            history: vec![e(1, Outcome::Stable), e(2, Outcome::RolledBack)],
            want_target: 1,
            want_stable: Some(1),
            ..base("after a breach rollback the breached revision stays barred")
        },
    ];
    for c in cases {
        let d = decide(&Inputs {
            requested: c.requested,
            previous_update: c.previous_update,
            current: c.current,
            stable: c.stable,
            history: &c.history,
            paused: c.paused,
            auto_rollback: c.auto_rollback,
            retry_token: c.retry,
            health: c.health,
            analysis: c.analysis,
            breach: c.breach,
        });
        assert_eq!(d.target, c.want_target, "{}: target", c.name);
        assert_eq!(d.stable, c.want_stable, "{}: stable", c.name);
        assert_eq!(d.changes, c.want_changes, "{}: changes", c.name);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Progressing),
            Just(Outcome::Stable),
            Just(Outcome::RolledBack),
            Just(Outcome::Failed),
            Just(Outcome::Superseded),
        ]
    }

    fn any_health() -> impl Strategy<Value = Health> {
        prop_oneof![
            Just(Health::Rolling),
            Just(Health::Complete),
            Just(Health::Failed(crash()))
        ]
    }

    proptest! {
        /// A revision marked failed is never rolled out again unless the
        /// request is new (the spec moved away and back, or a new retry
        /// token), and a revision that just failed is never the target
        /// when there is a stable one to go back to.
        #[test]
        fn never_rolls_forward_onto_a_failed_revision(
            outcomes in proptest::collection::vec(any_outcome(), 1..6),
            requested in 1..7i64,
            previous_update in proptest::option::of(1..7i64),
            current in proptest::option::of(1..7i64),
            stable in proptest::option::of(1..7i64),
            paused: bool,
            auto_rollback: bool,
            token in proptest::option::of(Just("t")),
            recorded_token in proptest::option::of(Just("t")),
            health in any_health(),
            analysis in prop_oneof![Just(Gate::Pending), Just(Gate::Passed), Just(Gate::Failed(metric())), Just(Gate::Halted("x".into()))],
            breach in proptest::option::of((proptest::option::of(1..7i64)).prop_map(|previous_stable| Breach { failure: metric(), previous_stable })),
        ) {
            let history: Vec<HistoryEntry> = outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| HistoryEntry { revision: i as i64 + 1, outcome: *o, retry_token: recorded_token.map(str::to_string), ..HistoryEntry::default() })
                .collect();
            let inputs = Inputs { requested, previous_update, current, stable, history: &history, paused, auto_rollback, retry_token: token, health, analysis: analysis.clone(), breach: breach.clone() };
            let d = decide(&inputs);
            let entry = history.iter().find(|e| e.revision == requested);
            let failed = entry.is_some_and(|e| matches!(e.outcome, Outcome::RolledBack | Outcome::Failed));
            let same_request = previous_update == Some(requested) && entry.and_then(|e| e.retry_token.as_deref()) == token;
            if failed && same_request {
                prop_assert!(!d.changes.contains(&Change::Start { revision: requested }), "{:?}", d);
                if current != Some(requested) && !paused {
                    prop_assert!(d.target != requested || current.is_none(), "{:?}", d);
                }
            }
            let just_failed = d.changes.iter().find_map(|c| match c { Change::Fail { revision, .. } => Some(*revision), _ => None });
            if let (Some(f), Some(s)) = (just_failed, d.stable)
                && auto_rollback
                && s != f
                && f == requested
            {
                prop_assert_eq!(d.target, s);
            }
            // Never promoted on an analysis that has not passed.
            if !matches!(analysis, Gate::Passed) {
                prop_assert!(!d.changes.iter().any(|c| matches!(c, Change::Succeed { .. })), "{:?}", d);
            }
            // Deterministic.
            prop_assert_eq!(decide(&inputs), d);
        }
    }
}
