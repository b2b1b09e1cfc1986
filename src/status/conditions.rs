//! Standard conditions, kept the way the Kubernetes API conventions ask:
//! keyed by type, `lastTransitionTime` moves only when the status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// A condition before it is stamped with times and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Draft {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Turns drafts into conditions, reusing `lastTransitionTime` from the
/// previous condition of the same type when its status did not change.
pub fn stamp(
    drafts: &[Draft],
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    drafts
        .iter()
        .map(|v| {
            let status = if v.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == v.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: v.type_.to_string(),
                status: status.to_string(),
                reason: v.reason.to_string(),
                message: v.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The condition of that type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = stamp(
            &[Draft::new(READY, false, "Pending", "waiting")],
            &[],
            Some(1),
            &at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));

        // Same status, new reason and message: time stays.
        let same = stamp(
            &[Draft::new(READY, false, "NotEnoughReplicas", "0/1")],
            &first,
            Some(2),
            &at(200),
        );
        assert_eq!(same[0].last_transition_time, at(100));
        assert_eq!(same[0].reason, "NotEnoughReplicas");
        assert_eq!(same[0].observed_generation, Some(2));

        // Flip: time moves.
        let flipped = stamp(
            &[Draft::new(READY, true, "Serving", "1/1")],
            &same,
            Some(2),
            &at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
        assert_eq!(flipped[0].status, "True");
    }

    #[test]
    fn conditions_of_other_types_do_not_lend_their_time() {
        let previous = stamp(
            &[Draft::new(DEGRADED, true, "InvalidSpec", "x")],
            &[],
            Some(1),
            &at(100),
        );
        let now = stamp(
            &[Draft::new(READY, true, "Serving", "1/1")],
            &previous,
            Some(1),
            &at(500),
        );
        assert_eq!(now[0].last_transition_time, at(500));
    }
}
