//! The rollout decision: from what was observed, which revision the
//! Deployment should run and what happened to each revision. Pure, so every
//! case is a table row, and deterministic, so two operators looking at the
//! same cluster decide the same thing.

use crate::api::{HistoryEntry, Outcome};

use crate::gates::{Breach, Failure, Gate, Health};

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
    if i.paused
        && let Some(current) = i.current
    {
        return Decision {
            target: current,
            stable: i.stable,
            changes: Vec::new(),
        };
    }
    let requested = i.requested;
    let mut changes = Vec::new();

    // 0. The Deployment runs the requested revision but the history does
    //    not know it: its start was acted on and the process died before
    //    writing it. Record it now, so the history has no gaps.
    if i.current == Some(requested) && i.entry(requested).is_none() {
        changes.push(Change::Start {
            revision: requested,
        });
    }

    // 1. Judge the revision being rolled out (or the guarded Stable one).
    let judged = judge_running(i);
    changes.extend(judged.changes);
    let stable = judged.stable;

    // 2. Is what the spec asks for barred? A failed revision is tried again
    //    only when the spec moved away and came back, or the retry
    //    annotation changed: never in a loop.
    let barred = judged
        .just_failed
        .as_ref()
        .is_some_and(|(r, _)| *r == requested)
        || (i.failed_before(requested) && i.same_request());

    // 3. What should run.
    let rollback_target = stable.filter(|s| i.auto_rollback && *s != requested);
    let target = if barred {
        rollback_target.or(i.current).unwrap_or(requested)
    } else {
        requested
    };
    if let Some((revision, after)) = judged.reinstated.filter(|(r, _)| *r == target) {
        changes.push(Change::Reinstate { revision, after });
    }
    if let Some((revision, failure)) = judged.just_failed {
        let replaced_by = (target != revision).then_some(target);
        changes.push(Change::Fail {
            revision,
            replaced_by,
            failure,
        });
    }

    // 4. Start what the spec asks for, unless it runs already.
    if !barred {
        changes.extend(start(i, &changes));
    }
    Decision {
        target,
        stable,
        changes,
    }
}

impl Inputs<'_> {
    fn entry(&self, revision: i64) -> Option<&HistoryEntry> {
        self.history.iter().find(|e| e.revision == revision)
    }

    fn outcome(&self, revision: i64) -> Outcome {
        self.entry(revision)
            .map_or(Outcome::Progressing, |e| e.outcome)
    }

    fn failed_before(&self, revision: i64) -> bool {
        matches!(
            self.entry(revision).map(|e| e.outcome),
            Some(Outcome::RolledBack | Outcome::Failed)
        )
    }

    /// The spec asks for what it asked for last time, with the same retry
    /// token.
    fn same_request(&self) -> bool {
        self.previous_update == Some(self.requested)
            && self
                .entry(self.requested)
                .and_then(|e| e.retry_token.as_deref())
                == self.retry_token
    }
}

/// What judging the running revision found.
struct Judged {
    changes: Vec<Change>,
    stable: Option<i64>,
    just_failed: Option<(i64, Failure)>,
    /// (reinstated Stable revision, the one that breached after it)
    reinstated: Option<(i64, i64)>,
}

/// A revision rolling out must be healthy and pass its metric gates; either
/// failing fails it. After promotion, a Stable revision that breached its
/// gates gives way to the Stable revision before it.
fn judge_running(i: &Inputs<'_>) -> Judged {
    let mut judged = Judged {
        changes: Vec::new(),
        stable: i.stable,
        just_failed: None,
        reinstated: None,
    };
    if let Some(current) = i.current.filter(|c| i.outcome(*c) == Outcome::Progressing) {
        match (&i.health, &i.analysis) {
            (Health::Failed(failure), _) | (_, Gate::Failed(failure)) => {
                judged.just_failed = Some((current, failure.clone()));
            }
            (Health::Complete, Gate::Passed) => {
                judged.changes.push(Change::Succeed { revision: current });
                if let Some(old) = i.stable.filter(|s| *s != current) {
                    judged.changes.push(Change::Supersede {
                        revision: old,
                        by: current,
                    });
                }
                judged.stable = Some(current);
            }
            _ => {}
        }
    } else if let (Some(current), Some(breach)) = (i.current, &i.breach)
        && i.stable == Some(current)
        && i.requested == current
        && i.auto_rollback
        && let Some(previous) = breach.previous_stable.filter(|p| *p != current)
    {
        judged.just_failed = Some((current, breach.failure.clone()));
        judged.stable = Some(previous);
        judged.reinstated = Some((previous, current));
    }
    judged
}

/// Starting the requested revision: it supersedes a revision still rolling
/// out that was not judged in this pass.
fn start(i: &Inputs<'_>, so_far: &[Change]) -> Vec<Change> {
    let requested = i.requested;
    let runs = i.current == Some(requested)
        && matches!(i.outcome(requested), Outcome::Progressing | Outcome::Stable);
    if runs {
        return Vec::new();
    }
    let mut changes = Vec::new();
    if let Some(current) = i
        .current
        .filter(|c| *c != requested && i.outcome(*c) == Outcome::Progressing)
    {
        let judged = so_far.iter().any(|c| matches!(c, Change::Succeed { revision } | Change::Fail { revision, .. } if *revision == current));
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
    changes
}

#[cfg(test)]
mod tests;
