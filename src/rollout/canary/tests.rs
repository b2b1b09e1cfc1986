use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::api::MetricCheck;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

const PLAN: [Step; 4] = [
    Step::SetWeight(10),
    Step::Pause(Some(Duration::from_secs(60))),
    Step::SetWeight(50),
    Step::Pause(None),
];

fn analysis(revision: i64, verdict: Verdict, checked_at: i64) -> AnalysisStatus {
    AnalysisStatus {
        revision,
        metrics: vec![MetricCheck {
            name: "error-rate".into(),
            verdict,
            checked_at: Some(at(checked_at)),
            ..MetricCheck::default()
        }],
        ..AnalysisStatus::default()
    }
}

const THIS: Attempt = Attempt {
    revision: 5,
    started: 900,
};

fn stored(index: usize, started: i64) -> CanaryStatus {
    status_at(&PLAN, 5, index, at(started), at(900))
}

struct Case {
    what: &'static str,
    stored: Option<CanaryStatus>,
    available: i32,
    analysis: Option<AnalysisStatus>,
    promotion: Option<Promotion>,
    now: i64,
    /// (step index, weight, waiting for promotion)
    expected: (i32, i32, bool),
}

fn case(what: &'static str, stored: Option<CanaryStatus>, expected: (i32, i32, bool)) -> Case {
    Case {
        what,
        stored,
        available: 1,
        analysis: Some(analysis(5, Verdict::Pass, 1_010)),
        promotion: None,
        now: 1_020,
        expected,
    }
}

#[test]
fn steps_advance_only_when_ready_and_checked() {
    let cases = vec![
        case("a new canary starts at step 1", None, (0, 10, false)),
        Case {
            what: "a canary of another revision starts over",
            stored: Some(status_at(&PLAN, 4, 2, at(900), at(900))),
            ..case("", None, (0, 10, false))
        },
        case(
            "ready, checked after the step started and passed: next step",
            Some(stored(0, 1_000)),
            (1, 10, false),
        ),
        Case {
            what: "pods not ready yet",
            available: 0,
            ..case("", Some(stored(0, 1_000)), (0, 10, false))
        },
        Case {
            what: "the latest check failed",
            analysis: Some(analysis(5, Verdict::Fail, 1_010)),
            ..case("", Some(stored(0, 1_000)), (0, 10, false))
        },
        Case {
            what: "the latest check is inconclusive",
            analysis: Some(analysis(5, Verdict::Inconclusive, 1_010)),
            ..case("", Some(stored(0, 1_000)), (0, 10, false))
        },
        Case {
            what: "the latest check was made before the step started",
            analysis: Some(analysis(5, Verdict::Pass, 990)),
            ..case("", Some(stored(0, 1_000)), (0, 10, false))
        },
        Case {
            what: "a check in the second the step started does not count",
            analysis: Some(analysis(5, Verdict::Pass, 1_000)),
            ..case("", Some(stored(0, 1_000)), (0, 10, false))
        },
        Case {
            what: "the analysis is of another revision",
            analysis: Some(analysis(4, Verdict::Pass, 1_010)),
            ..case("", Some(stored(0, 1_000)), (0, 10, false))
        },
        case(
            "a pause with time left holds",
            Some(stored(1, 1_000)),
            (1, 10, false),
        ),
        Case {
            what: "a pause that is over moves on",
            now: 1_061,
            analysis: Some(analysis(5, Verdict::Pass, 1_050)),
            ..case("", Some(stored(1, 1_000)), (2, 50, false))
        },
        Case {
            what: "setWeight 50 of 4 stable pods needs 2 canary pods",
            available: 1,
            ..case("", Some(stored(2, 1_000)), (2, 50, false))
        },
        Case {
            what: "with 2 canary pods it moves on to the manual pause",
            available: 2,
            ..case("", Some(stored(2, 1_000)), (3, 50, true))
        },
        case(
            "a pause without duration waits",
            Some(stored(3, 1_000)),
            (3, 50, true),
        ),
        Case {
            what: "promote ends the pause: done, 100%",
            available: 2,
            promotion: Some(Promotion::Step {
                canary: THIS,
                index: 3,
            }),
            ..case("", Some(stored(3, 1_000)), (4, 100, false))
        },
        Case {
            what: "a promotion of another step does nothing",
            available: 2,
            promotion: Some(Promotion::Step {
                canary: THIS,
                index: 1,
            }),
            ..case("", Some(stored(3, 1_000)), (3, 50, true))
        },
        Case {
            what: "a promotion of an earlier canary of the same revision does nothing",
            available: 2,
            promotion: Some(Promotion::Step {
                canary: Attempt {
                    revision: 5,
                    started: 100,
                },
                index: 3,
            }),
            ..case("", Some(stored(3, 1_000)), (3, 50, true))
        },
        Case {
            what: "a promotion of another revision does nothing",
            promotion: Some(Promotion::Full {
                canary: Attempt {
                    revision: 4,
                    started: 900,
                },
            }),
            ..case("", Some(stored(0, 1_000)), (1, 10, false))
        },
        Case {
            what: "promote --full skips every step, even unready ones",
            available: 0,
            analysis: None,
            promotion: Some(Promotion::Full { canary: THIS }),
            ..case("", Some(stored(0, 1_000)), (4, 100, false))
        },
        case("done stays done", Some(stored(4, 1_000)), (4, 100, false)),
    ];
    for c in cases {
        let got = advance(&Inputs {
            steps: &PLAN,
            revision: 5,
            stored: c.stored.as_ref(),
            stable_replicas: 4,
            canary_available: c.available,
            analysis: c.analysis.as_ref(),
            gated: true,
            promotion: c.promotion,
            now: &at(c.now),
        });
        assert_eq!(
            (got.step_index, got.weight, got.waiting_for_promotion),
            c.expected,
            "{}",
            c.what
        );
    }
}

#[test]
fn a_step_keeps_its_start_time_until_it_is_left() {
    let held = advance(&Inputs {
        steps: &PLAN,
        revision: 5,
        stored: Some(&stored(1, 1_000)),
        stable_replicas: 4,
        canary_available: 1,
        analysis: None,
        gated: false,
        promotion: None,
        now: &at(1_030),
    });
    assert_eq!(held.step_started_at, Some(at(1_000)), "restart-safe pause");
    assert_eq!(held.summary, "step 2/4: 10% on revision 5");
}

#[test]
fn canary_replicas_are_the_weight_of_the_stable_count_rounded_up() {
    for (weight, stable, expected) in [
        (0, 4, 0),
        (10, 4, 1),
        (10, 10, 1),
        (10, 11, 2),
        (50, 4, 2),
        (50, 3, 2),
        (100, 4, 4),
        (1, 0, 0),
        (100, 0, 0),
        (25, 1, 1),
        (150, 2, 2),
    ] {
        assert_eq!(replicas(weight, stable), expected, "{weight}% of {stable}");
    }
}

#[test]
fn promotion_annotations() {
    for (value, expected) in [
        (
            "5/900/2",
            Some(Promotion::Step {
                canary: THIS,
                index: 2,
            }),
        ),
        ("5/900/full", Some(Promotion::Full { canary: THIS })),
        // As the Argo CD actions write it: startedAt as status shows it.
        (
            "5/1970-01-01T00:15:00Z/2",
            Some(Promotion::Step {
                canary: THIS,
                index: 2,
            }),
        ),
        (
            "5/1970-01-01T00:15:00Z/full",
            Some(Promotion::Full { canary: THIS }),
        ),
        ("5/yesterday/2", None),
        ("5/2", None),
        ("5", None),
        ("x/900/1", None),
        ("5/900/next", None),
    ] {
        assert_eq!(Promotion::parse(value), expected, "{value}");
        if let Some(p) = expected {
            assert_eq!(Promotion::parse(&p.value()), Some(p));
        }
    }
}

#[test]
fn the_gate_waits_for_the_last_step_and_fails_at_any() {
    let failure = Failure {
        reason: "AnalysisFailed",
        message: "x".into(),
    };
    let mid = stored(1, 1_000);
    let end = stored(4, 1_000);
    assert_eq!(gate(&mid, Gate::Passed, None, true), Gate::Pending);
    assert_eq!(gate(&end, Gate::Passed, None, true), Gate::Passed);
    assert_eq!(gate(&end, Gate::Pending, None, true), Gate::Pending);
    // Promoted only once the canary runs the full count: its pods become
    // the stable ones.
    assert_eq!(gate(&end, Gate::Passed, None, false), Gate::Pending);
    assert_eq!(
        gate(&mid, Gate::Failed(failure.clone()), None, false),
        Gate::Failed(failure.clone())
    );
    assert_eq!(
        gate(&mid, Gate::Passed, Some(failure.clone()), false),
        Gate::Failed(failure)
    );
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..=100i32).prop_map(Step::SetWeight),
        proptest::option::of(0..120u64).prop_map(|d| Step::Pause(d.map(Duration::from_secs))),
    ]
}

fn any_verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Pass),
        Just(Verdict::Fail),
        Just(Verdict::Inconclusive)
    ]
}

proptest! {
    /// Over any plan and any sequence of observations: the weight stays
    /// within 0–100, the step never goes back, it moves by at most one step
    /// without a full promotion, and never past a step whose latest check
    /// did not pass.
    #[test]
    fn steps_never_overshoot_or_pass_a_failed_check(
        steps in proptest::collection::vec(any_step(), 1..8),
        stable in 0..20i32,
        rounds in proptest::collection::vec(
            (0..25i32, any_verdict(), 0..90i64, proptest::option::of(0..10i32), any::<bool>()),
            1..30,
        ),
    ) {
        let mut now = 1_000i64;
        let mut status: Option<CanaryStatus> = None;
        for (available, verdict, dt, promote_step, full) in rounds {
            now += dt;
            let promotion = match (full, promote_step) {
                (true, _) => None,
                (false, Some(index)) => Some(Promotion::Step { canary: Attempt { revision: 5, started: 1_000 }, index }),
                (false, None) => None,
            };
            let checks = analysis(5, verdict, now);
            let next = advance(&Inputs {
                steps: &steps,
                revision: 5,
                stored: status.as_ref(),
                stable_replicas: stable,
                canary_available: available,
                analysis: Some(&checks),
                gated: true,
                promotion,
                now: &at(now),
            });
            prop_assert!((0..=100).contains(&next.weight));
            prop_assert!(next.step_index <= next.steps);
            if let Some(before) = &status {
                prop_assert!(next.step_index >= before.step_index);
                prop_assert!(next.step_index <= before.step_index + 1);
                if verdict != Verdict::Pass {
                    prop_assert_eq!(next.step_index, before.step_index);
                }
            } else {
                prop_assert_eq!(next.step_index, 0);
            }
            status = Some(next);
        }
    }
}

#[test]
fn a_canary_runs_only_while_the_revision_it_belongs_to_rolls_out() {
    let entry = |revision: i64, outcome: Outcome| HistoryEntry {
        revision,
        outcome,
        ..HistoryEntry::default()
    };
    let canary = stored(2, 900);
    let rolling = [entry(4, Outcome::Stable), entry(5, Outcome::Progressing)];
    let cases = [
        ("rolling out, at a step", Some(5), &rolling[..], true),
        ("another revision rolls out", Some(4), &rolling[..], false),
        ("nothing rolls out", None, &rolling[..], false),
        ("promoted", Some(5), &[entry(5, Outcome::Stable)][..], false),
        (
            "rolled back",
            Some(5),
            &[entry(5, Outcome::RolledBack)][..],
            false,
        ),
        (
            "not in the history",
            Some(5),
            &[entry(4, Outcome::Stable)][..],
            false,
        ),
    ];
    for (what, current, history, runs) in cases {
        assert_eq!(
            running(Some(&canary), current, history).is_some(),
            runs,
            "{what}"
        );
    }
    assert_eq!(
        running(None, Some(5), &rolling),
        None,
        "no canary in status"
    );
}
