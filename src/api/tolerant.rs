//! Status enums that decode values this binary does not know. A newer
//! operator (or CRD) may write a phase, outcome or verdict this one has
//! never heard of, e.g. after a downgrade; refusing to decode would drop
//! the whole object from the watch and, at start, stop the operator for
//! every team. Each enum names the variant an unknown value is read as:
//! the one that triggers no decision of its own. Status is derived again
//! on the next write, so the unknown value is not kept.

/// Implements `Deserialize` for a unit-only enum: each listed variant by its
/// name, anything else as `$fallback`. The list must name every variant
/// (`round_trips` in the tests checks it).
macro_rules! tolerant {
    ($ty:ident, fallback = $fallback:ident, [$($variant:ident),+ $(,)?]) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Ok(match name.as_ref() {
                    $(stringify!($variant) => $ty::$variant,)+
                    _ => $ty::$fallback,
                })
            }
        }

        impl $ty {
            /// Every variant, for tests.
            #[cfg(test)]
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
        }
    };
}

pub(crate) use tolerant;

#[cfg(test)]
mod tests {
    use crate::api::{AlertChannel, AlertState, AnalysisPhase, Finding, Outcome, Phase, Verdict};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(all: &[T]) {
        for v in all {
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(&serde_json::from_value::<T>(json).unwrap(), v);
        }
    }

    #[test]
    fn known_values_round_trip() {
        round_trips(Phase::ALL);
        round_trips(Outcome::ALL);
        round_trips(AnalysisPhase::ALL);
        round_trips(Verdict::ALL);
        round_trips(Finding::ALL);
        round_trips(AlertState::ALL);
        round_trips(AlertChannel::ALL);
    }

    #[test]
    fn unknown_values_decode_as_the_inert_variant() {
        let unknown = serde_json::json!("Suspended");
        assert_eq!(
            serde_json::from_value::<Phase>(unknown.clone()).unwrap(),
            Phase::Pending
        );
        assert_eq!(
            serde_json::from_value::<Outcome>(unknown.clone()).unwrap(),
            Outcome::Superseded
        );
        assert_eq!(
            serde_json::from_value::<AnalysisPhase>(unknown.clone()).unwrap(),
            AnalysisPhase::Running
        );
        assert_eq!(
            serde_json::from_value::<Verdict>(unknown.clone()).unwrap(),
            Verdict::Inconclusive
        );
        assert_eq!(
            serde_json::from_value::<Finding>(unknown.clone()).unwrap(),
            Finding::Collecting
        );
        // Not sent as something it is not: the outbox drops these.
        assert_eq!(
            serde_json::from_value::<AlertState>(unknown.clone()).unwrap(),
            AlertState::Unknown
        );
        assert_eq!(
            serde_json::from_value::<AlertChannel>(unknown).unwrap(),
            AlertChannel::Unknown
        );
    }

    #[test]
    fn a_status_with_an_unknown_phase_decodes() {
        let status: crate::api::ModelDeploymentStatus =
            serde_json::from_value(serde_json::json!({"phase": "Suspended", "history": [
                {"revision": 1, "modelVersion": "1", "image": "i", "outcome": "Archived", "reason": "", "message": ""}
            ]}))
            .unwrap();
        assert_eq!(status.phase, Some(Phase::Pending));
        assert_eq!(status.history[0].outcome, Outcome::Superseded);
    }
}
