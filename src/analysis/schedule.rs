//! When the analysis of the running revision measures, and what its result
//! means for the rollout. Pure: the controller's `measure` step asks
//! `schedule` whether to query Prometheus at all, and turns the round's
//! outcome into gate, breach and requeue with `conclude`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::run::{self, Mode};
use crate::api::{AnalysisPhase, AnalysisStatus, BreachAction, HistoryEntry, Outcome};
use crate::gates::{Breach, Gate, Health};
use crate::rollout::history;

/// What `schedule` looks at.
pub struct Due<'a> {
    /// The running revision.
    pub revision: i64,
    /// Its outcome so far in the history (Progressing when it has no entry).
    pub outcome: Outcome,
    /// Whether it is the Stable revision.
    pub is_stable: bool,
    pub health: &'a Health,
    pub post_promotion: bool,
    pub paused: bool,
    pub interval: Duration,
    /// `status.analysis` as stored.
    pub stored: Option<&'a AnalysisStatus>,
    pub retry_token: Option<&'a str>,
    /// Time since the last post-promotion round of this revision (those
    /// rounds leave no trace in status when nothing changed); `None`: none
    /// since the operator started.
    pub since_guard_round: Option<Duration>,
    pub now: &'a Time,
}

/// The analysis' step for the running revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub mode: Mode,
    /// The stored analysis is this revision's current one.
    pub continuing: bool,
    /// Nothing holds the analysis (a pause, a stop for a person, failing
    /// pods): a round that finished may be judged now.
    pub open: bool,
    /// A round of queries is due now: open, and its time has come.
    pub due: bool,
}

/// `None`: the running revision is not analysed (it is neither rolling out
/// nor a guarded Stable revision).
pub fn schedule(d: &Due<'_>) -> Option<Schedule> {
    let mode = match d.outcome {
        Outcome::Progressing => Mode::Rollout {
            complete: *d.health == Health::Complete,
        },
        Outcome::Stable if d.post_promotion && d.is_stable => Mode::Guard,
        _ => return None,
    };
    let continuing = run::continues(d.stored, d.revision, mode, d.retry_token);
    let halted = continuing
        && d.stored
            .is_some_and(|a| a.phase == AnalysisPhase::Inconclusive);
    let open = !d.paused && !halted && !matches!(d.health, Health::Failed(_));
    let due = open
        && match mode {
            Mode::Rollout { .. } => {
                run::next_round_in(d.stored.filter(|_| continuing), d.interval, d.now).is_zero()
            }
            Mode::Guard => d.since_guard_round.is_none_or(|e| e >= d.interval),
        };
    Some(Schedule {
        mode,
        continuing,
        open,
        due,
    })
}

/// What the analysis hands to the decision and the status.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysed {
    /// What `status.analysis` becomes.
    pub status: Option<AnalysisStatus>,
    /// The rollout gate of the revision running now.
    pub gate: Gate,
    pub breach: Option<Breach>,
    /// When the next round is due, for the requeue.
    pub next_round: Option<Duration>,
}

impl Analysed {
    /// Nothing analysed in this pass: the stored analysis stays as it is.
    pub fn unchanged(stored: Option<&AnalysisStatus>) -> Self {
        Self {
            status: stored.cloned(),
            gate: Gate::Passed,
            breach: None,
            next_round: None,
        }
    }
}

/// Turns the advanced analysis into the gate the decision uses, a breach to
/// roll back from (post-promotion with `action: Rollback`), and the time of
/// the next round.
pub fn conclude(
    mode: Mode,
    status: AnalysisStatus,
    gate: Gate,
    breach_action: BreachAction,
    interval: Duration,
    history: &[HistoryEntry],
    now: &Time,
) -> Analysed {
    let next_round = (status.phase != AnalysisPhase::Inconclusive).then(|| match mode {
        Mode::Rollout { .. } => {
            run::next_round_in(Some(&status), interval, now).max(Duration::from_secs(1))
        }
        Mode::Guard => interval,
    });
    match mode {
        Mode::Rollout { .. } => Analysed {
            status: Some(status),
            gate,
            breach: None,
            next_round,
        },
        Mode::Guard => {
            let breach = match (&gate, breach_action) {
                (Gate::Failed(failure), BreachAction::Rollback) => Some(Breach {
                    failure: failure.clone(),
                    previous_stable: history::previous_stable(history, status.revision),
                }),
                _ => None,
            };
            Analysed {
                status: Some(status),
                gate: Gate::Passed,
                breach,
                next_round,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MetricCheck;
    use crate::gates::Failure;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn analysis(revision: i64, phase: AnalysisPhase, checked_at: i64) -> AnalysisStatus {
        AnalysisStatus {
            revision,
            phase,
            metrics: vec![MetricCheck {
                name: "m".into(),
                checked_at: Some(at(checked_at)),
                ..MetricCheck::default()
            }],
            ..AnalysisStatus::default()
        }
    }

    fn due<'a>(
        outcome: Outcome,
        health: &'a Health,
        stored: Option<&'a AnalysisStatus>,
    ) -> Due<'a> {
        static NOW: std::sync::LazyLock<Time> = std::sync::LazyLock::new(|| at(1_000));
        Due {
            revision: 2,
            outcome,
            is_stable: outcome == Outcome::Stable,
            health,
            post_promotion: true,
            paused: false,
            interval: Duration::from_secs(30),
            stored,
            retry_token: None,
            since_guard_round: None,
            now: &NOW,
        }
    }

    #[test]
    fn when_a_round_is_due() {
        let rolling = Health::Rolling;
        let failed = Health::Failed(Failure {
            reason: "CrashLoopBackOff",
            message: "x".into(),
        });
        let recent = analysis(2, AnalysisPhase::Running, 990);
        let old = analysis(2, AnalysisPhase::Running, 900);
        let halted = analysis(2, AnalysisPhase::Inconclusive, 900);
        let rollout = Mode::Rollout { complete: false };
        // (what, input, (mode, open, due))
        type Row<'a> = (&'a str, Due<'a>, Option<(Mode, bool, bool)>);
        let cases: Vec<Row<'_>> = vec![
            (
                "first round of a new rollout",
                due(Outcome::Progressing, &rolling, None),
                Some((rollout, true, true)),
            ),
            (
                "checked 10 s ago, interval 30 s",
                due(Outcome::Progressing, &rolling, Some(&recent)),
                Some((rollout, true, false)),
            ),
            (
                "checked 100 s ago",
                due(Outcome::Progressing, &rolling, Some(&old)),
                Some((rollout, true, true)),
            ),
            (
                "stopped as inconclusive: waits for a person",
                due(Outcome::Progressing, &rolling, Some(&halted)),
                Some((rollout, false, false)),
            ),
            (
                "failing pods: no query, the pods decide",
                due(Outcome::Progressing, &failed, None),
                Some((rollout, false, false)),
            ),
            (
                "paused",
                Due {
                    paused: true,
                    ..due(Outcome::Progressing, &rolling, None)
                },
                Some((rollout, false, false)),
            ),
            (
                "stable, never guarded since start",
                due(Outcome::Stable, &rolling, None),
                Some((Mode::Guard, true, true)),
            ),
            (
                "stable, guarded 5 s ago",
                Due {
                    since_guard_round: Some(Duration::from_secs(5)),
                    ..due(Outcome::Stable, &rolling, None)
                },
                Some((Mode::Guard, true, false)),
            ),
            (
                "stable without post-promotion checks",
                Due {
                    post_promotion: false,
                    ..due(Outcome::Stable, &rolling, None)
                },
                None,
            ),
            (
                "rolled back: not analysed",
                due(Outcome::RolledBack, &rolling, None),
                None,
            ),
        ];
        for (what, input, expected) in cases {
            let got = schedule(&input).map(|s| (s.mode, s.open, s.due));
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn a_guard_breach_rolls_back_only_with_action_rollback() {
        let failure = Failure {
            reason: "PostPromotionBreach",
            message: "x".into(),
        };
        let history = vec![
            HistoryEntry {
                revision: 1,
                outcome: Outcome::Superseded,
                promoted_at: Some(at(10)),
                ..HistoryEntry::default()
            },
            HistoryEntry {
                revision: 2,
                outcome: Outcome::Stable,
                promoted_at: Some(at(20)),
                ..HistoryEntry::default()
            },
        ];
        let status = analysis(2, AnalysisPhase::Guarding, 990);
        let conclude_with = |action| {
            conclude(
                Mode::Guard,
                status.clone(),
                Gate::Failed(failure.clone()),
                action,
                Duration::from_secs(30),
                &history,
                &at(1_000),
            )
        };
        let rollback = conclude_with(BreachAction::Rollback);
        assert_eq!(
            rollback.breach,
            Some(Breach {
                failure: failure.clone(),
                previous_stable: Some(1)
            })
        );
        assert_eq!(rollback.gate, Gate::Passed, "a guard never gates a rollout");
        assert_eq!(conclude_with(BreachAction::Alert).breach, None);
    }

    #[test]
    fn next_round_follows_the_interval_and_stops_when_halted() {
        let running = analysis(2, AnalysisPhase::Running, 990);
        let next = |status: AnalysisStatus| {
            conclude(
                Mode::Rollout { complete: false },
                status,
                Gate::Pending,
                BreachAction::Alert,
                Duration::from_secs(30),
                &[],
                &at(1_000),
            )
            .next_round
        };
        assert_eq!(next(running), Some(Duration::from_secs(20)));
        assert_eq!(
            next(analysis(2, AnalysisPhase::Inconclusive, 990)),
            None,
            "a stopped analysis waits for a person, not a timer"
        );
    }
}
