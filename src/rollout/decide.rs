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

    // 0. The Deployment runs the requested revision but the history does
    //    not know it: its start was acted on and the process died before
    //    writing it. Record it now, so the history has no gaps.
    let requested = i.requested;
    if i.current == Some(requested) && entry(requested).is_none() {
        changes.push(Change::Start {
            revision: requested,
        });
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
mod tests;
