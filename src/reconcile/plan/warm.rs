//! The warm rollback window (`canary.warmRollbackWindow`): after a
//! promotion, `<name>-previous` keeps the previous revision's pods, which
//! no Service sends traffic to, so that a post-promotion rollback hands
//! them back to the stable Deployment (`rollout::promotion`) instead of
//! starting pods and loading the model again. Pure, like the rest of the
//! plan.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;

use crate::analysis::duration;
use crate::api::ServedVersion;
use crate::reconcile::observe::Snapshot;
use crate::resources;
use crate::rollout::history::previous_stable;
use crate::rollout::promotion::Keep;

/// What `<name>-previous` should be.
#[derive(Clone, Debug, PartialEq)]
pub enum WarmChild {
    /// Leave it as it is (or absent).
    Leave,
    /// Run `served` as `revision` on `replicas` pods; `paused` while it has
    /// not adopted the pods it keeps, so that it never starts its own.
    Run {
        revision: i64,
        served: Box<ServedVersion>,
        replicas: i32,
        paused: bool,
    },
    /// Delete it and orphan its ReplicaSet, which the (paused) stable
    /// Deployment adopts: a rollback inside the window.
    Release,
    /// Delete it with its pods: the window is over, or not wanted.
    Delete,
}

/// What the window asks for once no canary runs and nothing is handed over.
pub struct Kept {
    pub child: WarmChild,
    /// The model's Service selects `stable` alone while pods are kept.
    pub service_selects: Option<i64>,
    /// When the window ends.
    pub requeue: Option<Duration>,
}

/// The window, when the spec asks for one (validated before planning).
pub fn window(seen: &Snapshot) -> Option<Duration> {
    let window = seen
        .md
        .spec
        .rollout
        .canary
        .as_ref()?
        .warm_rollback_window
        .as_deref()?;
    duration::parse(window).ok().filter(|d| !d.is_zero())
}

/// `<name>-previous` goes, if there is one.
pub fn gone(seen: &Snapshot) -> WarmChild {
    match seen.warm_deployment {
        Some(_) => WarmChild::Delete,
        None => WarmChild::Leave,
    }
}

fn revision_of(d: &Option<std::sync::Arc<Deployment>>) -> Option<i64> {
    d.as_deref().and_then(resources::revision_of)
}

/// The previous revision's pods to keep through the promotion of
/// `promoted`: the stable Deployment's revision, or (once it is deleted)
/// the one `<name>-previous` or the history names.
pub fn keep(seen: &Snapshot, promoted: i64) -> Option<Keep> {
    window(seen)?;
    let revision = seen
        .stable_running
        .or_else(|| revision_of(&seen.warm_deployment))
        .filter(|r| *r != promoted)
        .or_else(|| previous_stable(&seen.previous.history, promoted))?;
    Some(Keep {
        revision,
        held: holds(seen, revision),
    })
}

/// `<name>-previous` runs `revision` and counts every live pod of it as
/// its own.
fn holds(seen: &Snapshot, revision: i64) -> bool {
    let live = seen.live_pods.get(&revision).copied().unwrap_or(0);
    seen.warm_deployment.as_deref().is_some_and(|d| {
        let counted = d
            .status
            .as_ref()
            .filter(|s| s.observed_generation >= d.metadata.generation)
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        resources::revision_of(d) == Some(revision)
            && d.metadata.deletion_timestamp.is_none()
            && usize::try_from(counted).unwrap_or(0) >= live
    })
}

/// `<name>-previous` keeping `revision` on `replicas` pods.
pub fn run(
    seen: &Snapshot,
    revision: i64,
    requested: i64,
    replicas: i32,
    paused: bool,
) -> WarmChild {
    match seen.served_of(revision, requested) {
        Some(served) => WarmChild::Run {
            revision,
            served: Box::new(served.clone()),
            replicas,
            paused,
        },
        None => WarmChild::Leave,
    }
}

/// After the promotion of `stable`: `<name>-previous` keeps its pods until
/// the window, counted from the promotion, ends; then it goes.
pub fn after_promotion(seen: &Snapshot, stable: i64, requested: i64) -> Kept {
    let over = Kept {
        child: gone(seen),
        service_selects: None,
        requeue: None,
    };
    let (Some(window), Some(kept)) = (window(seen), revision_of(&seen.warm_deployment)) else {
        return over;
    };
    if kept == stable {
        return over;
    }
    let promoted_at = seen
        .previous
        .history
        .iter()
        .find(|e| e.revision == stable)
        .and_then(|e| e.promoted_at.as_ref())
        .map_or(seen.now.0, |t| t.0);
    let elapsed = seen.now.0.duration_since(promoted_at);
    let left = Duration::try_from(elapsed)
        .ok()
        .map_or(Some(window), |e| window.checked_sub(e))
        .filter(|left| !left.is_zero());
    let Some(left) = left else {
        return over;
    };
    let replicas = seen
        .warm_deployment
        .as_deref()
        .and_then(|d| d.spec.as_ref()?.replicas)
        .unwrap_or(0);
    Kept {
        child: run(seen, kept, requested, replicas, false),
        service_selects: Some(stable),
        requeue: Some(left.max(Duration::from_secs(1))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::api::Outcome;
    use crate::reconcile::plan::tests::{entry, revision, snapshot};
    use crate::status::Revisions;

    /// Revision 2 promoted at second 10 (now: 1,000), revision 1 kept on 3
    /// pods by `<name>-previous`, a window of `window`.
    fn kept(window: Option<&str>) -> Snapshot {
        let previous = Revisions {
            stable: Some(2),
            history: vec![entry(1, Outcome::Superseded), entry(2, Outcome::Stable)],
            ..Revisions::default()
        };
        let mut seen = snapshot(
            "2.0",
            Some(2),
            previous,
            vec![revision(1, "1.0"), revision(2, "2.0")],
        );
        let mut md = (*seen.md).clone();
        md.spec.rollout.canary = serde_json::from_value(json!({
            "steps": [{"setWeight": 50}], "warmRollbackWindow": window,
        }))
        .unwrap();
        let one = revision(1, "1.0").served.unwrap();
        seen.warm_deployment = Some(Arc::new(resources::warm_deployment(
            &md,
            &one,
            1,
            3,
            &resources::Platform::default(),
        )));
        seen.md = Arc::new(md);
        seen
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn the_kept_pods_stay_for_the_window_counted_from_the_promotion() {
        // (case, window, now, kept?, requeue)
        let cases = [
            ("inside", Some("1h"), 1_000, true, Some(3_600 - 990)),
            ("last second", Some("1000s"), 1_009, true, Some(1)),
            ("over", Some("990s"), 1_000, false, None),
            ("no window (field removed)", None, 1_000, false, None),
            ("a zero window", Some("0s"), 1_000, false, None),
        ];
        for (case, window, now, stays, requeue) in cases {
            let mut seen = kept(window);
            seen.now = at(now);
            let k = after_promotion(&seen, 2, 2);
            match stays {
                true => {
                    assert!(
                        matches!(
                            k.child,
                            WarmChild::Run {
                                revision: 1,
                                replicas: 3,
                                paused: false,
                                ..
                            }
                        ),
                        "{case}: {:?}",
                        k.child
                    );
                    assert_eq!(k.service_selects, Some(2), "{case}");
                }
                false => {
                    assert_eq!(k.child, WarmChild::Delete, "{case}");
                    assert_eq!(k.service_selects, None, "{case}");
                }
            }
            assert_eq!(
                k.requeue.map(|d| d.as_secs()),
                requeue.map(|s: i64| s as u64),
                "{case}"
            );
        }
    }

    #[test]
    fn the_revision_kept_is_never_the_stable_one() {
        // Rolled back to 1 and the holder not released yet: it goes.
        let seen = kept(Some("1h"));
        assert_eq!(after_promotion(&seen, 1, 1).child, WarmChild::Delete);
        // Nothing kept, nothing to do.
        let mut none = kept(Some("1h"));
        none.warm_deployment = None;
        assert_eq!(after_promotion(&none, 2, 2).child, WarmChild::Leave);
    }
}
