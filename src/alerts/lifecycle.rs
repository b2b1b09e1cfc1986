//! Lifecycle notices: what a rollout did that a webhook may ask to hear
//! about (`spec.alerts.webhook.notify`). Edge-triggered and pure: a notice
//! comes from a decided change or a canary step differing from the stored
//! status, and goes into the outbox in the status write that records the
//! change, so a pass that repeats (its write failed) decides it again
//! instead of twice.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{CanaryStatus, FiringAlert, HistoryEntry, NotificationKind};
use crate::rollout::decide::Change;

pub const ROLLOUT_STARTED: &str = "ModelRolloutStarted";
pub const CANARY_STEP: &str = "ModelCanaryStep";
pub const AWAITING_PROMOTION: &str = "ModelAwaitingPromotion";
pub const PROMOTED: &str = "ModelPromoted";

/// The kind of a notice by its alertname.
pub fn kind(alertname: &str) -> Option<NotificationKind> {
    Some(match alertname {
        ROLLOUT_STARTED => NotificationKind::RolloutStarted,
        CANARY_STEP => NotificationKind::CanaryStep,
        AWAITING_PROMOTION => NotificationKind::AwaitingPromotion,
        PROMOTED => NotificationKind::Promoted,
        _ => return None,
    })
}

/// What one pass changed, as the notices it raises.
pub struct Facts<'a> {
    pub changes: &'a [Change],
    /// The history status will hold (for versions, reasons, messages).
    pub history: &'a [HistoryEntry],
    /// The canary as stored, and as planned.
    pub canary_before: Option<&'a CanaryStatus>,
    pub canary: Option<&'a CanaryStatus>,
    /// `<namespace>/<name>`, for the promote command a notice names.
    pub object: &'a str,
    pub now: &'a Time,
}

pub fn notices(f: &Facts<'_>) -> Vec<FiringAlert> {
    let mut notices: Vec<FiringAlert> = f
        .changes
        .iter()
        .filter_map(|change| match change {
            Change::Start { revision } => {
                let e = entry(f, *revision);
                let why = e
                    .map(|e| e.message.as_str())
                    .filter(|m| !m.is_empty())
                    .map_or_else(String::new, |m| format!(": {m}"));
                Some(notice(
                    f,
                    ROLLOUT_STARTED,
                    *revision,
                    format!("rollout of {} started{why}", described(f, *revision)),
                ))
            }
            Change::Succeed { revision } => Some(notice(
                f,
                PROMOTED,
                *revision,
                format!("{} passed and is Stable", described(f, *revision)),
            )),
            Change::Fail { .. } | Change::Supersede { .. } | Change::Reinstate { .. } => None,
        })
        .collect();
    notices.extend(canary_notice(f));
    notices
}

/// A canary that reached a step it was not at in the stored status (a
/// new canary's first step included); the last "step" (promoting) is the
/// Promoted notice's.
fn canary_notice(f: &Facts<'_>) -> Option<FiringAlert> {
    let c = f.canary?;
    if c.step_index >= c.steps {
        return None;
    }
    let same_step = f.canary_before.is_some_and(|b| {
        b.revision == c.revision
            && b.started_at == c.started_at
            && b.step_index == c.step_index
            && b.waiting_for_promotion == c.waiting_for_promotion
    });
    if same_step {
        return None;
    }
    let (alertname, what) = if c.waiting_for_promotion {
        let name = f.object.rsplit('/').next().unwrap_or(f.object);
        (
            AWAITING_PROMOTION,
            format!(
                "canary of {} waits for promotion at {}% (step {}/{}): kubectl model promote {name} -n {}",
                described(f, c.revision),
                c.weight,
                c.step_index.saturating_add(1),
                c.steps,
                f.object.split('/').next().unwrap_or_default(),
            ),
        )
    } else {
        (
            CANARY_STEP,
            format!(
                "canary of {} at step {}/{}: {}% of the traffic",
                described(f, c.revision),
                c.step_index.saturating_add(1),
                c.steps,
                c.weight
            ),
        )
    };
    let mut n = notice(f, alertname, c.revision, what);
    // The step tells two notices of one canary apart (`outbox::notice_key`).
    n.metric = format!("step-{}", c.step_index.saturating_add(1));
    Some(n)
}

fn entry<'a>(f: &Facts<'a>, revision: i64) -> Option<&'a HistoryEntry> {
    f.history.iter().find(|e| e.revision == revision)
}

/// "revision 3 (model 2.1.0)".
fn described(f: &Facts<'_>, revision: i64) -> String {
    match entry(f, revision).map(|e| e.model_version.as_str()) {
        Some(v) if !v.is_empty() => format!("revision {revision} (model {v})"),
        _ => format!("revision {revision}"),
    }
}

fn notice(f: &Facts<'_>, alertname: &str, revision: i64, message: String) -> FiringAlert {
    let e = entry(f, revision);
    FiringAlert {
        alertname: alertname.into(),
        severity: "info".into(),
        revision,
        model_version: e.map(|e| e.model_version.clone()).unwrap_or_default(),
        metric: String::new(),
        reason: e.map(|e| e.reason.clone()).unwrap_or_default(),
        message,
        since: Some(f.now.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Outcome;
    use k8s_openapi::jiff::Timestamp;

    fn entry(revision: i64) -> HistoryEntry {
        HistoryEntry {
            revision,
            model_version: format!("{revision}.0"),
            outcome: Outcome::Progressing,
            reason: "RolloutStarted".into(),
            message: String::new(),
            ..HistoryEntry::default()
        }
    }

    fn canary(revision: i64, step: i32, waiting: bool) -> CanaryStatus {
        CanaryStatus {
            revision,
            step_index: step,
            steps: 3,
            weight: 10 * (step + 1),
            started_at: Some(Time(Timestamp::from_second(100).unwrap())),
            waiting_for_promotion: waiting,
            ..CanaryStatus::default()
        }
    }

    /// (alertname, revision, metric) of each notice.
    fn raised(f: &Facts<'_>) -> Vec<(String, i64, String)> {
        notices(f)
            .into_iter()
            .map(|n| (n.alertname, n.revision, n.metric))
            .collect()
    }

    #[test]
    fn which_changes_raise_which_notices() {
        let now = Time(Timestamp::from_second(1_000).unwrap());
        let history = [entry(1), entry(2)];
        let step0 = canary(2, 0, false);
        let step1 = canary(2, 1, false);
        let paused = canary(2, 1, true);
        let promoting = canary(2, 3, false);
        let mut restarted = step0.clone();
        restarted.started_at = Some(Time(Timestamp::from_second(200).unwrap()));
        let fail = Change::Fail {
            revision: 2,
            replaced_by: Some(1),
            failure: crate::gates::Failure {
                reason: "CrashLoopBackOff",
                message: "crash".into(),
            },
        };
        type Case<'a> = (
            &'a str,
            Vec<Change>,
            Option<&'a CanaryStatus>,
            Option<&'a CanaryStatus>,
            Vec<(&'a str, i64, &'a str)>,
        );
        let cases: Vec<Case<'_>> = vec![
            ("nothing changed: nothing", vec![], None, None, vec![]),
            (
                "a start",
                vec![Change::Start { revision: 2 }],
                None,
                None,
                vec![(ROLLOUT_STARTED, 2, "")],
            ),
            (
                "a promotion (and the old Stable superseded: nothing for that)",
                vec![
                    Change::Supersede { revision: 1, by: 2 },
                    Change::Succeed { revision: 2 },
                ],
                None,
                None,
                vec![(PROMOTED, 2, "")],
            ),
            (
                "a failure is the RolledBack alert's, not a notice",
                vec![fail],
                None,
                None,
                vec![],
            ),
            (
                "a reinstated Stable is the alert's too",
                vec![Change::Reinstate {
                    revision: 1,
                    after: 2,
                }],
                None,
                None,
                vec![],
            ),
            (
                "a new canary: started, and its first step",
                vec![Change::Start { revision: 2 }],
                None,
                Some(&step0),
                vec![(ROLLOUT_STARTED, 2, ""), (CANARY_STEP, 2, "step-1")],
            ),
            (
                "the same step again: nothing",
                vec![],
                Some(&step0),
                Some(&step0),
                vec![],
            ),
            (
                "the next step",
                vec![],
                Some(&step0),
                Some(&step1),
                vec![(CANARY_STEP, 2, "step-2")],
            ),
            (
                "a pause without duration: awaiting promotion instead",
                vec![],
                Some(&step0),
                Some(&paused),
                vec![(AWAITING_PROMOTION, 2, "step-2")],
            ),
            (
                "still waiting: nothing",
                vec![],
                Some(&paused),
                Some(&paused),
                vec![],
            ),
            (
                "past the last step: the promotion says it",
                vec![],
                Some(&step1),
                Some(&promoting),
                vec![],
            ),
            (
                "the canary started over at the same step",
                vec![],
                Some(&step0),
                Some(&restarted),
                vec![(CANARY_STEP, 2, "step-1")],
            ),
        ];
        for (what, changes, before, after, want) in cases {
            let f = Facts {
                changes: &changes,
                history: &history,
                canary_before: before,
                canary: after,
                object: "prod/fraud",
                now: &now,
            };
            let want: Vec<_> = want
                .into_iter()
                .map(|(a, r, m)| (a.to_string(), r, m.to_string()))
                .collect();
            assert_eq!(raised(&f), want, "{what}");
        }
    }

    #[test]
    fn notices_explain_themselves() {
        let now = Time(Timestamp::from_second(1_000).unwrap());
        let mut e = entry(2);
        e.message = "model 2.0 replaces 1.0".into();
        let history = [e];
        let paused = canary(2, 1, true);
        let f = Facts {
            changes: &[Change::Start { revision: 2 }],
            history: &history,
            canary_before: None,
            canary: Some(&paused),
            object: "prod/fraud",
            now: &now,
        };
        let messages: Vec<String> = notices(&f).into_iter().map(|n| n.message).collect();
        assert_eq!(
            messages,
            vec![
                "rollout of revision 2 (model 2.0) started: model 2.0 replaces 1.0".to_string(),
                "canary of revision 2 (model 2.0) waits for promotion at 20% (step 2/3): kubectl model promote fraud -n prod".to_string(),
            ]
        );
        for n in notices(&f) {
            assert_eq!(n.severity, "info");
            assert_eq!(n.model_version, "2.0");
            assert_eq!(n.since, Some(now.clone()));
            assert!(kind(&n.alertname).is_some(), "{}", n.alertname);
        }
    }
}
