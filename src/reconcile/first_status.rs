//! When a new ModelDeployment's first status is written.
//!
//! One new ModelDeployment gets its first status within `PROGRESS_WINDOW` of
//! its creation (at once if its first rollout has an outcome sooner), so a
//! person sees it picked up within a couple of seconds.
//!
//! A burst of new ones (a GitOps sync of a whole fleet, a namespace
//! restored from backup) is different: every first status written while
//! the rollout is still going is followed by a second at its outcome, and
//! those extra writes land on an API server that is at that moment busy
//! creating every Deployment, ReplicaSet and pod of the burst. A
//! ModelDeployment that was awaiting its first status while more than
//! `BURST` did belongs to a burst, also after the count drops again (the
//! burst's last ones would otherwise each get two writes), and its first
//! status is written at the first rollout's outcome (Healthy, Degraded,
//! RolledBack, Paused) or `BURST_HOLD` after creation, whichever is first.
//! Decisions never wait: what the status holds back is "Progressing, n/m
//! pods", which a first rollout's next pass derives again from the cluster.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::watcher;

use crate::api::ModelDeployment;

/// More new ModelDeployments than this awaiting their first status make a
/// burst: more than the operator reconciles at once (`--concurrency`'s
/// default), so some wait in the queue anyway.
pub const BURST: usize = 16;

/// The longest a first status waits during a burst: longer than a burst
/// of 1,000 takes to converge on a small cluster (about 75 s on the
/// benchmark's 2 cores), so each of its models gets one status write.
pub const BURST_HOLD: Duration = Duration::from_secs(120);

/// The ModelDeployments of this scope without status, keyed
/// `namespace/name`, kept from the ModelDeployment watch itself: a burst
/// is mostly objects still queued for their first pass, which a count kept
/// by the passes would not see. An entry leaves with the object's first
/// status (our write, or its watch event) or its deletion; one older than
/// `BURST_HOLD` no longer counts.
#[derive(Default)]
pub struct Awaiting {
    state: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// When each was first seen without status.
    seen: HashMap<String, Instant>,
    /// The last time more than `BURST` awaited: every one seen before then
    /// belongs to a burst.
    last_burst: Option<Instant>,
}

impl Awaiting {
    /// Follows one event of the ModelDeployment watch.
    pub fn follow(&self, event: &watcher::Event<ModelDeployment>) {
        use watcher::Event as E;
        match event {
            E::Apply(md) | E::InitApply(md) => match md.status {
                None => self.note(&key_of(md)),
                Some(_) => self.done(&key_of(md)),
            },
            E::Delete(md) => self.done(&key_of(md)),
            E::Init | E::InitDone => {}
        }
    }

    fn note(&self, key: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.seen.retain(|_, at| at.elapsed() < BURST_HOLD);
        state
            .seen
            .entry(key.to_string())
            .or_insert_with(Instant::now);
        if state.seen.len() > BURST {
            state.last_burst = Some(Instant::now());
        }
    }

    /// `key`'s first status was written.
    pub fn done(&self, key: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.seen.remove(key);
    }

    /// Whether `key` awaits its first status as part of a burst.
    pub fn in_burst(&self, key: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (state.seen.get(key), state.last_burst) {
            (Some(seen), Some(burst)) => *seen <= burst,
            _ => false,
        }
    }

    /// How many await their first status.
    pub fn entries(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .seen
            .values()
            .filter(|at| at.elapsed() < BURST_HOLD)
            .count()
    }
}

/// `namespace/name`: how both maps of status write times key an object.
pub(super) fn key_of(md: &ModelDeployment) -> String {
    format!(
        "{}/{}",
        md.metadata.namespace.as_deref().unwrap_or_default(),
        md.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(name: &str, with_status: bool) -> ModelDeployment {
        let mut md = crate::fixtures::md().name(name).build();
        if with_status {
            md.status = Some(Default::default());
        }
        md
    }

    #[test]
    fn awaiting_follows_the_watch_until_a_first_status_or_deletion() {
        use watcher::Event as E;
        let awaiting = Awaiting::default();
        awaiting.follow(&E::InitApply(md("a", false)));
        awaiting.follow(&E::InitApply(md("old", true)));
        awaiting.follow(&E::Apply(md("b", false)));
        awaiting.follow(&E::Apply(md("c", false)));
        awaiting.follow(&E::Apply(md("a", false)));
        assert_eq!(awaiting.entries(), 3, "each object once, none with status");
        awaiting.follow(&E::Apply(md("a", true)));
        awaiting.follow(&E::Delete(md("b", false)));
        assert_eq!(awaiting.entries(), 1);
        awaiting.done("ml/c");
        assert_eq!(awaiting.entries(), 0, "our own write");
    }

    #[test]
    fn a_burst_holds_those_seen_before_its_end_and_not_those_after() {
        use watcher::Event as E;
        let awaiting = Awaiting::default();
        for i in 0..BURST {
            awaiting.follow(&E::Apply(md(&format!("m{i}"), false)));
        }
        assert!(!awaiting.in_burst("ml/m0"), "{BURST} are not a burst");
        awaiting.follow(&E::Apply(md("one-more", false)));
        assert!(awaiting.in_burst("ml/m0"), "the first ones join the burst");
        assert!(awaiting.in_burst("ml/one-more"));
        // The burst winds down: its last ones stay in it.
        for i in 1..BURST {
            awaiting.follow(&E::Apply(md(&format!("m{i}"), true)));
        }
        assert!(awaiting.in_burst("ml/m0"));
        // A new one after the burst is on its own.
        std::thread::sleep(Duration::from_millis(2));
        awaiting.follow(&E::Apply(md("later", false)));
        assert!(!awaiting.in_burst("ml/later"));
        assert!(!awaiting.in_burst("ml/unknown"));
    }
}
