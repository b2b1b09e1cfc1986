use super::*;
use crate::api::{MetricGate, OnNoData, PostPromotionSpec, PrometheusSpec};
use k8s_openapi::jiff::Timestamp;

fn at(s: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + s).unwrap())
}

fn spec(failure_limit: i32, inconclusive_limit: i32) -> AnalysisSpec {
    let gate = |name: &str| MetricGate {
        name: name.into(),
        query: Some(format!("{name}_query")),
        comparison: None,
        min: None,
        max: Some(0.05),
        max_increase_percent: None,
        max_decrease_percent: None,
    };
    AnalysisSpec {
        prometheus: PrometheusSpec {
            address: "http://127.0.0.1:9090".into(),
            timeout_seconds: 5,
            bearer_token_secret_ref: None,
        },
        interval: "10s".into(),
        bake_time: "60s".into(),
        failure_limit,
        on_no_data: OnNoData::Inconclusive,
        inconclusive_limit,
        metrics: vec![gate("errors"), gate("latency")],
        post_promotion: PostPromotionSpec::default(),
        window: None,
    }
}

fn check(name: &str, verdict: Verdict, on_data: bool) -> Check {
    Check {
        name: name.into(),
        query: format!("{name}_query"),
        judgement: Judgement {
            verdict,
            on_data,
            value: on_data.then_some(0.01),
            baseline: None,
            bound: "<= 0.05".into(),
            message: format!("{verdict}"),
            evidence: None,
        },
    }
}

fn round(errors: Verdict, latency: Verdict) -> Option<Vec<Check>> {
    Some(vec![
        check("errors", errors, true),
        check("latency", latency, true),
    ])
}

/// Runs rounds at the given seconds and returns the last result.
fn run(
    spec: &AnalysisSpec,
    start: Option<AnalysisStatus>,
    rounds: Rounds,
) -> (AnalysisStatus, Gate) {
    let mut stored = start;
    let mut last = None;
    for (second, mode, checks) in rounds {
        let now = at(second);
        let (status, gate) = advance(Advance {
            spec,
            bake_time: Duration::from_secs(60),
            revision: 2,
            mode,
            previous: stored.as_ref(),
            retry_token: None,
            now: &now,
            checks,
            measured_at: None,
        });
        stored = Some(status.clone());
        last = Some((status, gate));
    }
    last.unwrap()
}

const ROLLING: Mode = Mode::Rollout { complete: false };
const DONE: Mode = Mode::Rollout { complete: true };
use Verdict::{Fail, Inconclusive, Pass};

/// Rounds as (second, mode, checks).
type Rounds = Vec<(i64, Mode, Option<Vec<Check>>)>;

#[test]
fn rollout_table() {
    let s = spec(1, 2);
    let cases: Vec<(&str, Rounds, AnalysisPhase, &str)> = vec![
        (
            "checks pass while rolling: pending",
            vec![(0, ROLLING, round(Pass, Pass))],
            AnalysisPhase::Running,
            "Pending",
        ),
        (
            "complete but bake not over: pending",
            vec![(0, DONE, round(Pass, Pass)), (30, DONE, round(Pass, Pass))],
            AnalysisPhase::Baking,
            "Pending",
        ),
        (
            "bake over and every metric passes: passed",
            vec![(0, DONE, round(Pass, Pass)), (60, DONE, round(Pass, Pass))],
            AnalysisPhase::Passed,
            "Passed",
        ),
        (
            "bake time counts from completion, not from start",
            vec![
                (0, ROLLING, round(Pass, Pass)),
                (50, DONE, round(Pass, Pass)),
                (70, DONE, round(Pass, Pass)),
            ],
            AnalysisPhase::Baking,
            "Pending",
        ),
        (
            "a failure within the limit is tolerated",
            vec![(0, DONE, round(Fail, Pass)), (60, DONE, round(Pass, Pass))],
            AnalysisPhase::Passed,
            "Passed",
        ),
        (
            "one failure past the limit fails",
            vec![
                (0, ROLLING, round(Fail, Pass)),
                (10, ROLLING, round(Fail, Pass)),
            ],
            AnalysisPhase::Failed,
            "Failed",
        ),
        (
            "failures need not be in a row during a rollout",
            vec![
                (0, ROLLING, round(Fail, Pass)),
                (10, ROLLING, round(Pass, Pass)),
                (20, ROLLING, round(Fail, Pass)),
            ],
            AnalysisPhase::Failed,
            "Failed",
        ),
        (
            "latest check failing holds promotion",
            vec![(0, DONE, round(Pass, Pass)), (60, DONE, round(Pass, Fail))],
            AnalysisPhase::Baking,
            "Pending",
        ),
        (
            "inconclusive past the limit halts",
            vec![
                (0, DONE, round(Inconclusive, Pass)),
                (10, DONE, round(Inconclusive, Pass)),
                (20, DONE, round(Inconclusive, Pass)),
            ],
            AnalysisPhase::Inconclusive,
            "Halted",
        ),
        (
            "halted stays halted even when data returns",
            vec![
                (0, DONE, round(Inconclusive, Pass)),
                (10, DONE, round(Inconclusive, Pass)),
                (20, DONE, round(Inconclusive, Pass)),
                (90, DONE, round(Pass, Pass)),
            ],
            AnalysisPhase::Inconclusive,
            "Halted",
        ),
        (
            "no data counted as Pass never promotes",
            vec![
                (
                    0,
                    DONE,
                    Some(vec![
                        check("errors", Pass, false),
                        check("latency", Pass, true),
                    ]),
                ),
                (
                    60,
                    DONE,
                    Some(vec![
                        check("errors", Pass, false),
                        check("latency", Pass, true),
                    ]),
                ),
            ],
            AnalysisPhase::Baking,
            "Pending",
        ),
        (
            "no round due: state kept",
            vec![(0, DONE, round(Pass, Pass)), (5, DONE, None)],
            AnalysisPhase::Baking,
            "Pending",
        ),
        (
            "never promoted before the first check",
            vec![(0, DONE, None), (120, DONE, None)],
            AnalysisPhase::Baking,
            "Pending",
        ),
    ];
    for (name, rounds, phase, gate) in cases {
        let (status, got) = run(&s, None, rounds);
        let got = match got {
            Gate::Pending => "Pending",
            Gate::Passed => "Passed",
            Gate::Failed(_) => "Failed",
            Gate::Halted(_) => "Halted",
        };
        assert_eq!(
            (status.phase, got),
            (phase, gate),
            "{name}: {}",
            status.message
        );
    }
}

#[test]
fn a_failure_explains_metric_value_bound_and_query() {
    let (_, gate) = run(&spec(0, 2), None, vec![(0, ROLLING, round(Fail, Pass))]);
    let Gate::Failed(f) = gate else {
        panic!("{gate:?}")
    };
    assert_eq!(f.reason, "AnalysisFailed");
    assert_eq!(
        f.message,
        "metric errors failed 1 checks (failureLimit 0): Fail; value 0.01, bound <= 0.05; query: errors_query"
    );
}

#[test]
fn a_halted_analysis_restarts_when_the_retry_annotation_changes() {
    let s = spec(1, 0);
    let (halted, _) = run(&s, None, vec![(0, DONE, round(Inconclusive, Pass))]);
    assert_eq!(halted.phase, AnalysisPhase::Inconclusive);
    assert!(continues(Some(&halted), 2, DONE, None));
    assert!(!continues(Some(&halted), 2, DONE, Some("1")));
    let now = at(100);
    let (fresh, gate) = advance(Advance {
        spec: &s,
        bake_time: Duration::from_secs(60),
        revision: 2,
        mode: DONE,
        previous: Some(&halted),
        retry_token: Some("1"),
        now: &now,
        checks: round(Pass, Pass),
        measured_at: None,
    });
    assert_eq!((fresh.phase, gate), (AnalysisPhase::Baking, Gate::Pending));
    assert_eq!(fresh.retry_token.as_deref(), Some("1"));
    assert_eq!(fresh.metrics[0].inconclusive, 0);
}

#[test]
fn an_earlier_attempts_verdict_does_not_carry_over() {
    let s = spec(0, 2);
    let (failed, _) = run(&s, None, vec![(0, ROLLING, round(Fail, Pass))]);
    assert!(!continues(Some(&failed), 2, ROLLING, None));
    let (again, gate) = run(&s, Some(failed), vec![(100, ROLLING, round(Pass, Pass))]);
    assert_eq!((again.phase, gate), (AnalysisPhase::Running, Gate::Pending));
}

#[test]
fn guard_table() {
    let s = spec(1, 2);
    let (passed, _) = run(
        &s,
        None,
        vec![(0, DONE, round(Pass, Pass)), (60, DONE, round(Pass, Pass))],
    );
    assert_eq!(passed.phase, AnalysisPhase::Passed);
    let cases: Vec<(&str, Rounds, &str)> = vec![
        (
            "in bounds",
            vec![(70, Mode::Guard, round(Pass, Pass))],
            "Passed",
        ),
        (
            "one failure tolerated",
            vec![(70, Mode::Guard, round(Fail, Pass))],
            "Passed",
        ),
        (
            "failures in a row breach",
            vec![
                (70, Mode::Guard, round(Fail, Pass)),
                (80, Mode::Guard, round(Fail, Pass)),
            ],
            "Failed",
        ),
        (
            "a pass in between resets",
            vec![
                (70, Mode::Guard, round(Fail, Pass)),
                (80, Mode::Guard, round(Pass, Pass)),
                (90, Mode::Guard, round(Fail, Pass)),
            ],
            "Passed",
        ),
        (
            "no answer is no breach",
            vec![
                (70, Mode::Guard, round(Inconclusive, Inconclusive)),
                (80, Mode::Guard, round(Inconclusive, Inconclusive)),
                (90, Mode::Guard, round(Inconclusive, Inconclusive)),
                (100, Mode::Guard, round(Inconclusive, Inconclusive)),
            ],
            "Passed",
        ),
    ];
    for (name, rounds, want) in cases {
        let (status, gate) = run(&s, Some(passed.clone()), rounds);
        assert_eq!(status.phase, AnalysisPhase::Guarding, "{name}");
        let got = match &gate {
            Gate::Passed => "Passed",
            Gate::Failed(f) => {
                assert_eq!(f.reason, "PostPromotionBreach");
                "Failed"
            }
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_quiet_guard_changes_nothing_stored() {
    let s = spec(1, 2);
    let (passed, _) = run(
        &s,
        None,
        vec![(0, DONE, round(Pass, Pass)), (60, DONE, round(Pass, Pass))],
    );
    let (first, _) = run(&s, Some(passed), vec![(70, Mode::Guard, round(Pass, Pass))]);
    let (later, _) = run(
        &s,
        Some(first.clone()),
        vec![
            (80, Mode::Guard, round(Pass, Pass)),
            (90, Mode::Guard, round(Pass, Pass)),
        ],
    );
    assert_eq!(
        later, first,
        "rounds that change no verdict must not change status"
    );
    let (breach, _) = run(
        &s,
        Some(first.clone()),
        vec![(80, Mode::Guard, round(Fail, Pass)); 5],
    );
    let (still, _) = run(
        &s,
        Some(breach.clone()),
        vec![(130, Mode::Guard, round(Fail, Pass))],
    );
    assert_eq!(
        still, breach,
        "a lasting breach must not rewrite status every round"
    );
}

#[test]
fn next_round_timing() {
    let s = spec(1, 2);
    assert_eq!(
        next_round_in(None, Duration::from_secs(10), &at(0)),
        Duration::ZERO
    );
    let (status, _) = run(&s, None, vec![(0, DONE, round(Pass, Pass))]);
    assert_eq!(
        next_round_in(Some(&status), Duration::from_secs(10), &at(4)),
        Duration::from_secs(6)
    );
    assert_eq!(
        next_round_in(Some(&status), Duration::from_secs(10), &at(15)),
        Duration::ZERO
    );
}

#[test]
fn durations_read_like_the_spec() {
    for (secs, text) in [
        (0, "0s"),
        (45, "45s"),
        (90, "1m30s"),
        (3600, "1h"),
        (3725, "1h2m5s"),
    ] {
        assert_eq!(human(Duration::from_secs(secs)), text);
    }
}

#[test]
fn promotion_waits_for_a_check_made_after_every_pod_was_updated() {
    let s = spec(1, 2);
    let step = |second: i64, mode: Mode, previous: Option<&AnalysisStatus>, checks| {
        let now = at(second);
        advance(Advance {
            spec: &s,
            bake_time: Duration::ZERO,
            revision: 2,
            mode,
            previous,
            retry_token: None,
            now: &now,
            checks,
            measured_at: None,
        })
    };
    let (rolling, _) = step(0, ROLLING, None, round(Pass, Pass));
    let (done, gate) = step(5, DONE, Some(&rolling), None);
    assert_eq!(
        (done.phase, gate),
        (AnalysisPhase::Baking, Gate::Pending),
        "{}",
        done.message
    );
    assert_eq!(
        done.message,
        "baked; waiting for a check made after every pod was updated"
    );
    let (checked, gate) = step(6, DONE, Some(&done), round(Pass, Pass));
    assert_eq!((checked.phase, gate), (AnalysisPhase::Passed, Gate::Passed));
}

#[test]
fn a_round_judged_later_counts_as_of_when_it_ran() {
    let s = spec(1, 2);
    let step = |second: i64, measured: i64, previous: Option<&AnalysisStatus>| {
        let (now, measured_at) = (at(second), at(measured));
        advance(Advance {
            spec: &s,
            bake_time: Duration::ZERO,
            revision: 2,
            mode: DONE,
            previous,
            retry_token: None,
            now: &now,
            checks: round(Pass, Pass),
            measured_at: Some(&measured_at),
        })
    };
    // Started at 0 while pods were replaced; judged at 5, once every pod
    // runs the revision (the bake starts then): not a check of it.
    let (late, gate) = step(5, 0, None);
    assert_eq!(late.metrics[0].checked_at, Some(at(0)));
    assert_eq!(late.bake_started_at, Some(at(5)));
    assert_eq!(
        (late.phase, gate),
        (AnalysisPhase::Baking, Gate::Pending),
        "{}",
        late.message
    );
    // The next round, started after the bake began, promotes.
    let (checked, gate) = step(9, 6, Some(&late));
    assert_eq!(checked.metrics[0].checked_at, Some(at(6)));
    assert_eq!((checked.phase, gate), (AnalysisPhase::Passed, Gate::Passed));
}

/// A comparison check: Inconclusive while `finding` says it is collecting.
fn compared(name: &str, finding: crate::api::Finding) -> Check {
    let mut c = check(name, Inconclusive, false);
    c.judgement.evidence = Some(crate::api::ComparisonEvidence {
        finding,
        samples: 200,
        stable_samples: 10_000,
        min_samples: 1000,
        ..Default::default()
    });
    c
}

#[test]
fn collecting_counts_against_the_inconclusive_limit_only_after_the_bake_time() {
    use crate::api::Finding::{Collecting, Undecided};
    let s = spec(0, 2);
    let collecting = |finding| {
        Some(vec![
            compared("errors", finding),
            check("latency", Pass, true),
        ])
    };
    // Five rounds collecting before the bake time is over: not stopped, not
    // promoted, nothing counted.
    let (status, gate) = run(
        &s,
        None,
        vec![
            (0, ROLLING, collecting(Collecting)),
            (10, DONE, collecting(Collecting)),
            (20, DONE, collecting(Undecided)),
            (40, DONE, collecting(Collecting)),
            (60, DONE, collecting(Collecting)),
        ],
    );
    assert_eq!(
        (status.phase, &gate),
        (AnalysisPhase::Baking, &Gate::Pending)
    );
    assert_eq!(status.metrics[0].inconclusive, 0);
    assert!(
        status.metrics[0].evidence.is_some(),
        "evidence kept in status"
    );
    assert_eq!(
        status.message,
        "baking: 10s of 1m left; 1/2 metrics pass; collecting: errors (200 of 1,000)"
    );
    // After the bake time (60s from second 10), they count like any
    // inconclusive check, and the rollout stops past the limit.
    let (status, gate) = run(
        &s,
        None,
        vec![
            (0, ROLLING, collecting(Collecting)),
            (10, DONE, collecting(Collecting)),
            (70, DONE, collecting(Collecting)),
            (80, DONE, collecting(Undecided)),
            (90, DONE, collecting(Collecting)),
        ],
    );
    assert_eq!(status.metrics[0].inconclusive, 3);
    assert!(matches!(gate, Gate::Halted(_)), "{gate:?}");
    assert!(
        status
            .message
            .starts_with("stopped: metric errors had no verdict in 3 checks after the bake time"),
        "{}",
        status.message
    );
    // An inconclusive check without evidence (no answer) counts at once.
    let (status, _) = run(
        &s,
        None,
        vec![
            (0, DONE, round(Inconclusive, Pass)),
            (10, DONE, round(Inconclusive, Pass)),
        ],
    );
    assert_eq!(status.metrics[0].inconclusive, 2);
}
