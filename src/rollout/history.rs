//! Applies decided changes to `status.history`: one entry per revision,
//! oldest first, pruned to the history limit.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::decide::Change;
use crate::api::{AnalysisStatus, HistoryEntry, Outcome};
use crate::reasons;

/// What a history entry shows of a revision.
pub struct Described {
    pub model_version: String,
    pub image: String,
}

pub fn apply(
    history: &[HistoryEntry],
    changes: &[Change],
    describe: impl Fn(i64) -> Described,
    retry_token: Option<&str>,
    now: &Time,
) -> Vec<HistoryEntry> {
    let mut history = history.to_vec();
    for change in changes {
        let revision = match change {
            Change::Start { revision }
            | Change::Succeed { revision }
            | Change::Fail { revision, .. }
            | Change::Supersede { revision, .. }
            | Change::Reinstate { revision, .. } => *revision,
        };
        let index = match history.iter().position(|e| e.revision == revision) {
            Some(i) => i,
            None => {
                let d = describe(revision);
                history.push(HistoryEntry {
                    revision,
                    model_version: d.model_version,
                    image: d.image,
                    created_at: Some(now.clone()),
                    ..HistoryEntry::default()
                });
                history.len() - 1
            }
        };
        record(&mut history[index], change, retry_token, now);
    }
    history.sort_by_key(|e| e.revision);
    history
}

/// What `change` makes of a revision's entry.
fn record(entry: &mut HistoryEntry, change: &Change, retry_token: Option<&str>, now: &Time) {
    let (outcome, reason, message) = match change {
        Change::Start { .. } => {
            entry.retry_token = retry_token.map(str::to_string);
            entry.finished_at = None;
            (
                Outcome::Progressing,
                reasons::ROLLOUT_STARTED.to_string(),
                "rolling out".to_string(),
            )
        }
        Change::Succeed { .. } => {
            entry.promoted_at = Some(now.clone());
            (
                Outcome::Stable,
                reasons::ROLLOUT_COMPLETE.to_string(),
                "every pod ran it and was available".to_string(),
            )
        }
        Change::Reinstate { after, .. } => {
            entry.promoted_at = Some(now.clone());
            (
                Outcome::Stable,
                reasons::REINSTATED.to_string(),
                format!("stable again: revision {after} breached its metric gates after promotion"),
            )
        }
        Change::Fail {
            replaced_by,
            failure,
            ..
        } => {
            let outcome = if replaced_by.is_some() {
                Outcome::RolledBack
            } else {
                Outcome::Failed
            };
            (outcome, failure.reason.to_string(), failure.message.clone())
        }
        Change::Supersede { by, .. } => (
            Outcome::Superseded,
            reasons::SUPERSEDED.to_string(),
            format!("replaced by revision {by}"),
        ),
    };
    if outcome != Outcome::Progressing {
        entry.finished_at = Some(now.clone());
    }
    entry.outcome = outcome;
    entry.reason = reason;
    entry.message = message;
}

/// Keeps, in the entries of revisions whose rollout was just decided, the
/// metric checks the decision rested on.
pub fn record_checks(
    history: &mut [HistoryEntry],
    changes: &[Change],
    analysis: Option<&AnalysisStatus>,
) {
    let Some(analysis) = analysis else { return };
    for change in changes {
        let decided = match change {
            Change::Succeed { revision } | Change::Fail { revision, .. } => *revision,
            Change::Start { .. } | Change::Supersede { .. } | Change::Reinstate { .. } => continue,
        };
        if decided != analysis.revision {
            continue;
        }
        if let Some(entry) = history.iter_mut().find(|e| e.revision == decided) {
            entry.analysis = analysis.metrics.clone();
        }
    }
}

/// The Stable revision before `current`: the newest other revision that was
/// promoted and has not failed since.
pub fn previous_stable(history: &[HistoryEntry], current: i64) -> Option<i64> {
    history
        .iter()
        .filter(|e| e.revision != current && e.promoted_at.is_some())
        .filter(|e| matches!(e.outcome, Outcome::Stable | Outcome::Superseded))
        .max_by_key(|e| e.promoted_at.as_ref().map(|t| t.0))
        .map(|e| e.revision)
}

/// Keeps the newest `limit` entries, and always the ones in `keep`.
pub fn prune(history: Vec<HistoryEntry>, limit: usize, keep: &[i64]) -> Vec<HistoryEntry> {
    let mut newest: Vec<i64> = history.iter().map(|e| e.revision).collect();
    newest.sort_unstable_by(|a, b| b.cmp(a));
    newest.truncate(limit);
    history
        .into_iter()
        .filter(|e| newest.contains(&e.revision) || keep.contains(&e.revision))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::Failure;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn describe(r: i64) -> Described {
        Described {
            model_version: format!("{r}.0"),
            image: format!("srv:{r}"),
        }
    }

    #[test]
    fn a_revision_lives_through_its_outcomes() {
        let h = apply(
            &[],
            &[Change::Start { revision: 1 }],
            describe,
            None,
            &at(10),
        );
        assert_eq!(
            (
                h[0].outcome,
                h[0].created_at.clone(),
                h[0].finished_at.clone()
            ),
            (Outcome::Progressing, Some(at(10)), None)
        );
        assert_eq!(
            (h[0].model_version.as_str(), h[0].image.as_str()),
            ("1.0", "srv:1")
        );
        let h = apply(
            &h,
            &[Change::Succeed { revision: 1 }],
            describe,
            None,
            &at(20),
        );
        let h = apply(
            &h,
            &[Change::Start { revision: 2 }],
            describe,
            Some("t1"),
            &at(30),
        );
        let failure = Failure {
            reason: "CrashLoopBackOff",
            message: "2/2 new pods in CrashLoopBackOff".into(),
        };
        let h = apply(
            &h,
            &[Change::Fail {
                revision: 2,
                replaced_by: Some(1),
                failure,
            }],
            describe,
            None,
            &at(40),
        );
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].outcome, h[0].finished_at.clone()),
            (Outcome::Stable, Some(at(20)))
        );
        let bad = &h[1];
        assert_eq!(
            (bad.outcome, bad.reason.as_str()),
            (Outcome::RolledBack, "CrashLoopBackOff")
        );
        assert_eq!(bad.message, "2/2 new pods in CrashLoopBackOff");
        assert_eq!(
            (
                bad.created_at.clone(),
                bad.finished_at.clone(),
                bad.retry_token.as_deref()
            ),
            (Some(at(30)), Some(at(40)), Some("t1"))
        );

        // Returning to a revision keeps its entry and creation time.
        let h = apply(
            &h,
            &[Change::Start { revision: 1 }],
            describe,
            None,
            &at(50),
        );
        assert_eq!(h.len(), 2);
        assert_eq!(
            (
                h[0].outcome,
                h[0].created_at.clone(),
                h[0].finished_at.clone()
            ),
            (Outcome::Progressing, Some(at(10)), None)
        );
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_pinned() {
        let h: Vec<HistoryEntry> = (1..=6)
            .map(|r| HistoryEntry {
                revision: r,
                ..HistoryEntry::default()
            })
            .collect();
        let kept: Vec<i64> = prune(h, 3, &[1]).iter().map(|e| e.revision).collect();
        assert_eq!(kept, vec![1, 4, 5, 6]);
    }
}
