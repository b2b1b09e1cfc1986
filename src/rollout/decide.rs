//! The rollout decision: from what was observed, which revision the
//! Deployment should run and what happened to each revision. Pure, so every
//! case is a table row, and deterministic, so two operators looking at the
//! same cluster decide the same thing.

use crate::api::{HistoryEntry, Outcome};

use super::health::Failure;
pub use crate::analysis::run::Gate;

/// How the revision the Deployment runs is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Pods are still starting or being replaced.
    Rolling,
    /// Every pod runs it and is available.
    Complete,
    /// It cannot run: crash loop, image pull failure, or progress deadline.
    Failed(Failure),
}

pub struct Inputs<'a> {
    /// Revision the spec asks for.
    pub requested: i64,
    /// `status.updateRevision` before this reconcile: the spec asked for
    /// something else when it differs.
    pub previous_update: Option<i64>,
    /// Revision in the Deployment's pod template; `None` without a Deployment.
    pub current: Option<i64>,
    pub stable: Option<i64>,
    pub history: &'a [HistoryEntry],
    pub paused: bool,
    pub auto_rollback: bool,
    /// The `mlops.dev/retry` annotation now.
    pub retry_token: Option<&'a str>,
    /// Health of `current`.
    pub health: Health,
    /// The metric analysis of `current` while it rolls out (`Passed` when
    /// no analysis is configured).
    pub analysis: Gate,
    /// A post-promotion breach of the Stable `current` whose action is to
    /// roll back.
    pub breach: Option<Breach>,
}

/// The Stable revision broke its metric gates after promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breach {
    pub failure: Failure,
    /// The Stable revision before it, to go back to (`None`: there is none,
    /// so the breach can only be reported).
    pub previous_stable: Option<i64>,
}

/// What happened to a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Rolling out begins (or begins again, on retry or return).
    Start { revision: i64 },
    /// It passed: the new stable revision.
    Succeed { revision: i64 },
    /// It failed; `replaced_by` is the revision the Deployment goes back to
    /// (`None`: nothing to go back to, or automatic rollback is off).
    Fail {
        revision: i64,
        replaced_by: Option<i64>,
        failure: Failure,
    },
    /// A newer revision replaced it.
    Supersede { revision: i64, by: i64 },
    /// An earlier Stable revision is Stable again: the one promoted after it
    /// (`after`) breached its metric gates.
    Reinstate { revision: i64, after: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Revision whose template the Deployment should run.
    pub target: i64,
    pub stable: Option<i64>,
    pub changes: Vec<Change>,
}

pub fn decide(i: &Inputs<'_>) -> Decision {
    let entry = |r: i64| i.history.iter().find(|e| e.revision == r);
    let outcome = |r: i64| entry(r).map_or(Outcome::Progressing, |e| e.outcome);
    let mut changes = Vec::new();
    let mut stable = i.stable;

    if i.paused
        && let Some(current) = i.current
    {
        return Decision {
            target: current,
            stable,
            changes,
        };
    }

    // 1. Judge the revision being rolled out: it must be healthy and pass
    //    its metric gates; either failing fails it.
    let mut just_failed = None;
    let mut reinstated = None;
    if let Some(current) = i.current.filter(|c| outcome(*c) == Outcome::Progressing) {
        match (&i.health, &i.analysis) {
            (Health::Failed(failure), _) | (_, Gate::Failed(failure)) => {
                just_failed = Some((current, failure.clone()));
            }
            (Health::Complete, Gate::Passed) => {
                changes.push(Change::Succeed { revision: current });
                if let Some(old) = stable.filter(|s| *s != current) {
                    changes.push(Change::Supersede {
                        revision: old,
                        by: current,
                    });
                }
                stable = Some(current);
            }
            _ => {}
        }
    } else if let (Some(current), Some(breach)) = (i.current, &i.breach)
        && stable == Some(current)
        && i.requested == current
        && i.auto_rollback
        && let Some(previous) = breach.previous_stable.filter(|p| *p != current)
    {
        // After promotion: the Stable revision broke its gates; the one
        // before it becomes Stable again.
        just_failed = Some((current, breach.failure.clone()));
        stable = Some(previous);
        reinstated = Some((previous, current));
    }

    // 2. Is what the spec asks for barred? A failed revision is tried again
    //    only when the spec moved away and came back, or the retry
    //    annotation changed: never in a loop.
    let requested = i.requested;
    let failed_before = matches!(
        entry(requested).map(|e| e.outcome),
        Some(Outcome::RolledBack | Outcome::Failed)
    );
    let same_request = i.previous_update == Some(requested)
        && entry(requested).and_then(|e| e.retry_token.as_deref()) == i.retry_token;
    let barred = just_failed.as_ref().is_some_and(|(r, _)| *r == requested)
        || (failed_before && same_request);

    // 3. What should run.
    let rollback_target = stable.filter(|s| i.auto_rollback && *s != requested);
    let target = if barred {
        rollback_target.or(i.current).unwrap_or(requested)
    } else {
        requested
    };

    if let Some((revision, after)) = reinstated.filter(|(r, _)| *r == target) {
        changes.push(Change::Reinstate { revision, after });
    }
    if let Some((revision, failure)) = just_failed {
        let replaced_by = (target != revision).then_some(target);
        changes.push(Change::Fail {
            revision,
            replaced_by,
            failure,
        });
    }
    if !barred {
        let already_running =
            i.current == Some(requested) && outcome(requested) == Outcome::Progressing;
        let running_stable = i.current == Some(requested) && outcome(requested) == Outcome::Stable;
        if !already_running && !running_stable {
            if let Some(current) = i
                .current
                .filter(|c| *c != requested && outcome(*c) == Outcome::Progressing)
            {
                let judged = changes.iter().any(|c| matches!(c, Change::Succeed { revision } | Change::Fail { revision, .. } if *revision == current));
                if !judged {
                    changes.push(Change::Supersede {
                        revision: current,
                        by: requested,
                    });
                }
            }
            changes.push(Change::Start {
                revision: requested,
            });
        }
    }
    Decision {
        target,
        stable,
        changes,
    }
}

#[cfg(test)]
mod tests {
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
}
