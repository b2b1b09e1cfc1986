//! Promotion without a restart: the canary's pods become the stable ones.
//!
//! The canary Deployment's pod template is the one the stable Deployment
//! gets for the same revision, and a Deployment adopts an orphaned
//! ReplicaSet that its selector matches and takes one whose template equals
//! its own as its current ReplicaSet. So the promotion hands the canary's
//! ReplicaSet over, pods and all, in steps that each depend only on what
//! the cluster shows (an operator killed between two steps resumes at the
//! right one):
//!
//! 1. the canary runs the full count (it does before it is promoted);
//! 2. the stable Service and the route move to the promoted revision, and
//!    the stable Deployment gets its template, paused, so it creates no
//!    ReplicaSet of its own;
//! 3. the canary Deployment is deleted with its ReplicaSet orphaned; the
//!    stable Deployment adopts it, takes it as its current ReplicaSet (same
//!    template) and, the new ReplicaSet being full, scales the old one to 0;
//! 4. once it has adopted the pods, the stable Deployment is resumed.
//!
//! With `dynamicStableScale` the stable Deployment runs no pod once the
//! canary has all the traffic. Paused with 0 replicas it would scale the
//! adopted ReplicaSet down, and paused with the full count it would scale
//! its old, empty ReplicaSet up (a paused Deployment still scales its
//! active or newest ReplicaSet to its replica count). So an empty stable
//! Deployment is deleted first, its old ReplicaSets with it, and step 2
//! creates it again, paused, owning no ReplicaSet until it adopts the
//! canary's.
//!
//! With `warmRollbackWindow` the previous revision's pods are kept, not
//! scaled down: before step 2 the stable Deployment is deleted with its
//! ReplicaSet orphaned (its pods keep running), `<name>-previous` (selecting
//! that revision only) adopts them, and only then is the stable Deployment
//! created again, paused, owning no ReplicaSet. A post-promotion rollback in
//! the window is the same handover backwards, from `<name>-previous`.
//!
//! Pure: observed state in, next step out.

/// The stable Deployment, as observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stable {
    /// The revision of its pod template.
    pub revision: Option<i64>,
    pub paused: bool,
    /// The Deployment controller has seen its latest spec.
    pub observed: bool,
    /// Its pods of the template's revision (`status.updatedReplicas`).
    pub updated: i32,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Its pods, of any revision (`status.replicas`).
    pub pods: i32,
    /// Being deleted.
    pub deleting: bool,
}

/// The previous revision's pods to keep warm (`warmRollbackWindow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep {
    /// The revision they run: the stable Deployment's before the promotion.
    pub revision: i64,
    /// `<name>-previous` holds every live pod of `revision`: the stable
    /// Deployment, created again, cannot adopt them.
    pub held: bool,
}

/// The canary Deployment, as observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Canary {
    pub revision: i64,
    /// Being deleted (its ReplicaSet is being orphaned).
    pub deleting: bool,
    pub replicas: i32,
    /// Available pods of its current template.
    pub available: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// The revision being promoted: the decided Stable one.
    pub promoted: i64,
    /// The stable count (the HPA's while it scales).
    pub full: i32,
    pub stable: Stable,
    /// The Deployment holding the promoted revision's pods: the canary's,
    /// or `<name>-previous` on a rollback inside the warm window.
    pub canary: Option<Canary>,
    /// Pods of the promoted revision that exist, whoever owns them.
    pub promoted_pods: usize,
    /// Keep the stable Deployment's pods warm; `None`: scale them down.
    pub keep: Option<Keep>,
}

/// The next step of a promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// Scale the canary to the full count; the stable Deployment keeps its
    /// revision and the route its weights.
    Fill,
    /// Point the stable Service and the route at the promoted revision;
    /// the stable Deployment gets its template, paused.
    Pause,
    /// The stable Deployment runs no pod (`dynamicStableScale`): delete it,
    /// and its old ReplicaSets with it, before `Pause` creates it again.
    Drop,
    /// Delete the stable Deployment, orphaning its ReplicaSet: its pods
    /// stay, to be kept warm.
    Orphan,
    /// `<name>-previous` takes the orphaned pods: wait until it holds them
    /// and the stable Deployment is gone.
    Warm,
    /// Delete the Deployment holding the promoted pods, orphaning its
    /// ReplicaSet.
    Release,
    /// The stable Deployment has not adopted the canary's pods yet: stay
    /// paused.
    Adopting,
    /// Nothing (more) to hand over: the stable Deployment runs the promoted
    /// revision, resumed. Without a canary to hand over (its pods lost, or
    /// no canary at all) it rolls out as any Deployment does.
    Done,
}

pub fn handoff(i: &Inputs) -> Handoff {
    let canary = i.canary.filter(|c| c.revision == i.promoted);
    if i.stable.revision != Some(i.promoted) {
        return match canary {
            Some(c) if c.deleting => Handoff::Done,
            Some(c) if c.replicas >= i.full && c.available >= i.full => {
                if let Some(keep) = i.keep {
                    let gone = i.stable.revision.is_none();
                    if i.stable.deleting || (gone && !keep.held) {
                        return Handoff::Warm;
                    }
                    if i.stable.revision == Some(keep.revision) && i.stable.pods > 0 {
                        return Handoff::Orphan;
                    }
                }
                if i.stable.revision.is_none() || i.stable.replicas >= i.full {
                    Handoff::Pause
                } else if i.stable.replicas == 0 && i.stable.pods == 0 {
                    Handoff::Drop
                } else {
                    // Shrinking (dynamicStableScale): pausing it at the full
                    // count now would scale its old pods back up.
                    Handoff::Fill
                }
            }
            Some(_) => Handoff::Fill,
            None => Handoff::Done,
        };
    }
    if !i.stable.paused {
        return Handoff::Done;
    }
    match canary {
        Some(c) if !c.deleting => Handoff::Release,
        Some(_) => Handoff::Adopting,
        // Resumed once it counts the adopted pods as its own; with no pod
        // of the revision left to adopt, resumed to create them.
        None if i.stable.observed && (i.stable.updated > 0 || i.promoted_pods == 0) => {
            Handoff::Done
        }
        None => Handoff::Adopting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stable(revision: i64, paused: bool, updated: i32) -> Stable {
        Stable {
            revision: Some(revision),
            paused,
            observed: true,
            updated,
            replicas: 4,
            pods: 4,
            deleting: false,
        }
    }

    /// The stable Deployment of revision 1 scaled to `replicas`, with
    /// `pods` left (`dynamicStableScale`).
    fn shrunk(replicas: i32, pods: i32) -> Stable {
        Stable {
            replicas,
            pods,
            ..stable(1, false, pods)
        }
    }

    fn canary(revision: i64, replicas: i32, available: i32) -> Option<Canary> {
        Some(Canary {
            revision,
            deleting: false,
            replicas,
            available,
        })
    }

    fn deleting(revision: i64) -> Option<Canary> {
        Some(Canary {
            revision,
            deleting: true,
            replicas: 4,
            available: 4,
        })
    }

    #[test]
    fn each_step_follows_from_what_the_cluster_shows() {
        // (case, stable, canary, promoted pods, next step); revision 2 is
        // promoted over revision 1, 4 pods.
        let cases = [
            (
                "canary short of pods",
                stable(1, false, 4),
                canary(2, 1, 1),
                1,
                Handoff::Fill,
            ),
            (
                "canary scaled, not available",
                stable(1, false, 4),
                canary(2, 4, 3),
                4,
                Handoff::Fill,
            ),
            (
                "canary full",
                stable(1, false, 4),
                canary(2, 4, 4),
                4,
                Handoff::Pause,
            ),
            (
                "stable shrunk, one pod left: keep shrinking",
                shrunk(1, 1),
                canary(2, 4, 4),
                4,
                Handoff::Fill,
            ),
            (
                "stable scaled to 0, its last pod still there",
                shrunk(0, 1),
                canary(2, 4, 4),
                4,
                Handoff::Fill,
            ),
            (
                "stable empty: delete it",
                shrunk(0, 0),
                canary(2, 4, 4),
                4,
                Handoff::Drop,
            ),
            (
                "stable deleted: create it paused",
                Stable::default(),
                canary(2, 4, 4),
                4,
                Handoff::Pause,
            ),
            (
                "killed after pausing",
                stable(2, true, 0),
                canary(2, 4, 4),
                4,
                Handoff::Release,
            ),
            (
                "canary being deleted",
                stable(2, true, 0),
                deleting(2),
                4,
                Handoff::Adopting,
            ),
            (
                "canary gone, not adopted yet",
                stable(2, true, 0),
                None,
                4,
                Handoff::Adopting,
            ),
            ("adopted", stable(2, true, 4), None, 4, Handoff::Done),
            (
                "adopted, resumed",
                stable(2, false, 4),
                None,
                4,
                Handoff::Done,
            ),
            (
                "nothing left to adopt",
                stable(2, true, 0),
                None,
                0,
                Handoff::Done,
            ),
            (
                "no canary at all: rolls",
                stable(1, false, 4),
                None,
                0,
                Handoff::Done,
            ),
            (
                "a canary of another revision",
                stable(1, false, 4),
                canary(3, 4, 4),
                0,
                Handoff::Done,
            ),
            (
                "an older operator's promotion rolling",
                stable(2, false, 1),
                canary(2, 1, 1),
                2,
                Handoff::Done,
            ),
            (
                "deleted before the stable one was paused",
                stable(1, false, 4),
                deleting(2),
                4,
                Handoff::Done,
            ),
        ];
        for (case, stable, canary, promoted_pods, want) in cases {
            let inputs = Inputs {
                promoted: 2,
                full: 4,
                stable,
                canary,
                promoted_pods,
                keep: None,
            };
            assert_eq!(handoff(&inputs), want, "{case}");
        }
    }

    #[test]
    fn a_warm_window_keeps_the_previous_pods_out_of_the_stable_deployments_reach() {
        // (case, stable, revision 1's pods held by `<name>-previous`, next
        // step); revision 2 is promoted over revision 1, 4 pods, its canary
        // full.
        let cases = [
            ("stable runs 1", stable(1, false, 4), false, Handoff::Orphan),
            (
                "stable being deleted, its pods orphaned",
                Stable {
                    deleting: true,
                    ..stable(1, false, 4)
                },
                false,
                Handoff::Warm,
            ),
            (
                "stable gone, pods not held yet",
                Stable::default(),
                false,
                Handoff::Warm,
            ),
            (
                "stable gone, pods held",
                Stable::default(),
                true,
                Handoff::Pause,
            ),
            (
                "created again, paused",
                stable(2, true, 0),
                true,
                Handoff::Release,
            ),
            (
                "stable runs 1 on no pod: nothing to keep",
                Stable {
                    pods: 0,
                    ..stable(1, false, 0)
                },
                false,
                Handoff::Pause,
            ),
        ];
        for (case, stable, held, want) in cases {
            let inputs = Inputs {
                promoted: 2,
                full: 4,
                stable,
                canary: canary(2, 4, 4),
                promoted_pods: 4,
                keep: Some(Keep { revision: 1, held }),
            };
            assert_eq!(handoff(&inputs), want, "{case}");
        }
        // Not while the canary is short of pods.
        let filling = Inputs {
            promoted: 2,
            full: 4,
            stable: stable(1, false, 4),
            canary: canary(2, 4, 3),
            promoted_pods: 4,
            keep: Some(Keep {
                revision: 1,
                held: false,
            }),
        };
        assert_eq!(handoff(&filling), Handoff::Fill);
    }

    #[test]
    fn a_stable_deployment_not_yet_observed_stays_paused() {
        let inputs = Inputs {
            promoted: 2,
            full: 4,
            stable: Stable {
                observed: false,
                ..stable(2, true, 0)
            },
            canary: None,
            promoted_pods: 0,
            keep: None,
        };
        assert_eq!(handoff(&inputs), Handoff::Adopting);
    }
}
