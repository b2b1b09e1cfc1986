//! Metric rounds off the reconcile path. A round waits for Prometheus (up to
//! `timeoutSeconds`, at most 60 s); endpoints that never answer must not
//! hold the workers other ModelDeployments' reconciles and rollbacks need.
//!
//! So a due round runs as a task of its own and the reconcile that started
//! it returns at once. The task keeps its result here, in memory, and wakes
//! its ModelDeployment; the next reconcile takes the result and judges it
//! exactly as an awaited round's. Nothing here must survive a crash: a round
//! lost with the process is simply run again (status still says it is due),
//! never counted.
//!
//! At most `pool` rounds run at once, and at most `per_namespace` of one
//! namespace, so one team's hanging endpoint delays only that team's
//! analysis. A reconcile whose round is due when no slot is free does not
//! wait for one; it leaves the analysis as it is (no verdict, no promotion)
//! and comes back after `BUSY_RETRY`. Free slots go to the waiting by turns
//! between namespaces, and a namespace that runs no round gets one even
//! when others' rounds hold the whole pool (`crate::outbound::slots`). One
//! ModelDeployment has at most one round in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::channel::mpsc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::task::AbortHandle;

use crate::analysis::run::Check;
use crate::cache::model::ModelRef;
use crate::outbound::slots::{Decision, Slots};

/// When a reconcile that found no free slot looks again.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);

/// How many rounds, and queries to one endpoint, may run at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub pool: usize,
    pub per_namespace: usize,
    /// Queries in flight to one endpoint (scheme, host and port), whichever
    /// rounds they belong to (`crate::outbound::endpoints`).
    pub per_endpoint: usize,
}

impl Default for Limits {
    /// Eight rounds at once, two per namespace; sixteen queries at once to
    /// one Prometheus (a round of 20 comparison gates alone asks 80).
    fn default() -> Self {
        Self {
            pool: 8,
            per_namespace: 2,
            per_endpoint: 16,
        }
    }
}

/// What a round measures. Its result is used only while this is still what
/// the ModelDeployment analyses: an edited spec (generation), another
/// revision, a promotion (guard instead of rollout), a retry or a recreated
/// object (uid) discard it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measuring {
    pub uid: Option<String>,
    pub generation: Option<i64>,
    pub revision: i64,
    /// A post-promotion round rather than a rollout's.
    pub guard: bool,
    pub retry_token: Option<String>,
}

/// A round's checks, waiting for the next reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub measuring: Measuring,
    /// When the round was started: its checks' time in status.
    pub at: Time,
    pub checks: Vec<Check>,
    /// Its values are on `/metrics` already (a failed pass judged it).
    pub recorded: bool,
}

/// What `Rounds::start` did.
pub enum Start {
    /// Run the round: the ticket holds its slot until the round finishes.
    Run(Ticket),
    /// This very round is already in flight.
    InFlight,
    /// No free slot in the pool or in the namespace's share.
    Busy,
}

/// A round that may run: its slot, and where its result goes.
pub struct Ticket {
    object: String,
    id: u64,
    measuring: Measuring,
    _slot: Slot,
}

impl Ticket {
    pub fn id(&self) -> u64 {
        self.id
    }
}

enum RoundState {
    /// `None` until the task is spawned.
    InFlight(Option<AbortHandle>),
    Finished(Finished),
}

struct Entry {
    id: u64,
    measuring: Measuring,
    state: RoundState,
}

pub struct Rounds {
    slots: Arc<Mutex<Slots>>,
    /// The round in flight or the finished result of each ModelDeployment
    /// ("namespace/name"); at most one each.
    rounds: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
}

/// A running round's slot, given back when dropped.
struct Slot {
    object: String,
    namespace: String,
    slots: Arc<Mutex<Slots>>,
}

impl Rounds {
    /// Rounds in flight or finished and not yet judged.
    pub fn entries(&self) -> usize {
        let waiting = self.slots().entries();
        self.rounds.lock().unwrap_or_else(|e| e.into_inner()).len() + waiting
    }

    pub fn new(limits: Limits) -> Self {
        Self {
            slots: Arc::new(Mutex::new(Slots::new(limits.pool, limits.per_namespace))),
            rounds: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for `object`'s round, or `Err` with the round to cancel so
    /// that a starved namespace gets one (see `Slots::request`). Never
    /// waits.
    fn try_slot(&self, object: &str, namespace: &str) -> Result<Slot, Option<String>> {
        match self.slots().request(object, namespace, Instant::now()) {
            Decision::Run => Ok(Slot {
                object: object.to_string(),
                namespace: namespace.to_string(),
                slots: self.slots.clone(),
            }),
            Decision::Busy { preempt } => Err(preempt),
        }
    }

    /// Takes `object`'s finished round, if there is one. Every reconcile
    /// takes it, whether it can use it or not: a result is judged once, or
    /// never.
    pub fn take_finished(&self, object: &str) -> Option<Finished> {
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(rounds.get(object)?.state, RoundState::Finished(_)) {
            return None;
        }
        match rounds.remove(object)?.state {
            RoundState::Finished(finished) => Some(finished),
            RoundState::InFlight(_) => None,
        }
    }

    /// Starts a round of `measuring` for `object` unless that round is in
    /// flight already. A round in flight for something else (an older
    /// spec, another revision) is cancelled: its result would be discarded
    /// anyway, and its slot is someone else's turn.
    pub fn start(&self, object: &str, namespace: &str, measuring: &Measuring) -> Start {
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        let stale = match rounds.get(object) {
            Some(e) if matches!(e.state, RoundState::InFlight(_)) && e.measuring == *measuring => {
                return Start::InFlight;
            }
            Some(_) => rounds.remove(object),
            None => None,
        };
        let slot = self.try_slot(object, namespace);
        // A round cancelled for a namespace that runs none: its slot comes
        // back when its task ends, and goes to that namespace by turns.
        let preempted = match &slot {
            Err(Some(victim)) => rounds
                .remove(victim)
                .filter(|e| matches!(e.state, RoundState::InFlight(_))),
            _ => None,
        };
        let ticket = slot.ok().map(|slot| {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            rounds.insert(
                object.to_string(),
                Entry {
                    id,
                    measuring: measuring.clone(),
                    state: RoundState::InFlight(None),
                },
            );
            Ticket {
                object: object.to_string(),
                id,
                measuring: measuring.clone(),
                _slot: slot,
            }
        });
        drop(rounds);
        cancel(stale);
        cancel(preempted);
        match ticket {
            Some(ticket) => Start::Run(ticket),
            None => Start::Busy,
        }
    }

    /// Records the task running round `id`, so that it can be cancelled.
    pub fn spawned(&self, object: &str, id: u64, task: AbortHandle) {
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        match rounds.get_mut(object) {
            Some(Entry {
                id: current,
                state: RoundState::InFlight(handle),
                ..
            }) if *current == id => *handle = Some(task),
            // Finished already, or forgotten: nothing left to cancel.
            _ => {}
        }
    }

    /// Gives back a result a failed pass judged, for its retry to judge
    /// again: the pass's status write was refused or never made, so status
    /// does not show the round yet. (The retry discards it if status does:
    /// see `analysis::measure`.) Unless, meanwhile, the object was forgotten
    /// or another round was started.
    pub fn give_back(&self, object: &str, finished: Finished) {
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        if rounds.contains_key(object) {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        rounds.insert(
            object.to_string(),
            Entry {
                id,
                measuring: finished.measuring.clone(),
                state: RoundState::Finished(finished),
            },
        );
    }

    /// Keeps a round's result for the next reconcile and gives its slot
    /// back. `false`: the round was cancelled or its object forgotten in the
    /// meantime, and the result is dropped (nothing to wake).
    pub fn finish(&self, ticket: Ticket, at: Time, checks: Vec<Check>) -> bool {
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = rounds.get_mut(&ticket.object) else {
            return false;
        };
        if entry.id != ticket.id || !matches!(entry.state, RoundState::InFlight(_)) {
            return false;
        }
        entry.state = RoundState::Finished(Finished {
            measuring: ticket.measuring.clone(),
            at,
            checks,
            recorded: false,
        });
        true
    }

    /// Drops a deleted ModelDeployment's round: one in flight is cancelled
    /// (which gives its slot back), a result is discarded.
    pub fn forget(&self, object: &str) {
        let removed = self
            .rounds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(object);
        cancel(removed);
        self.slots().forget(object, Instant::now());
    }

    /// How many ModelDeployments have a round in flight or a result kept.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn cancel(entry: Option<Entry>) {
    if let Some(Entry {
        state: RoundState::InFlight(Some(task)),
        ..
    }) = entry
    {
        task.abort();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.release(&self.object, &self.namespace, Instant::now());
    }
}

/// Wakes a ModelDeployment's reconcile once its round has finished: the
/// sending half of a stream the controller reconciles on.
#[derive(Clone)]
pub struct Wake(mpsc::UnboundedSender<ModelRef>);

impl Wake {
    /// The waker, and the stream to hand to `Controller::reconcile_on`.
    pub fn channel() -> (Self, impl Stream<Item = ModelRef> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded();
        (Self(tx), rx)
    }

    pub fn wake(&self, object: ModelRef) {
        // Fails only when the controller is gone (shutdown): nobody to wake.
        let _ = self.0.unbounded_send(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn measuring(revision: i64) -> Measuring {
        Measuring {
            uid: Some("u".into()),
            generation: Some(1),
            revision,
            guard: false,
            retry_token: None,
        }
    }

    fn at() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn run(start: Start) -> Ticket {
        match start {
            Start::Run(ticket) => ticket,
            Start::InFlight => panic!("in flight"),
            Start::Busy => panic!("busy"),
        }
    }

    #[test]
    fn a_namespace_gets_its_share_and_the_pool_is_bounded() {
        let rounds = Rounds::new(Limits {
            pool: 3,
            per_namespace: 2,
            ..Limits::default()
        });
        let m = measuring(1);
        let a1 = run(rounds.start("a/1", "a", &m));
        let _a2 = run(rounds.start("a/2", "a", &m));
        assert!(matches!(rounds.start("a/3", "a", &m), Start::Busy));
        let _b1 = run(rounds.start("b/1", "b", &m));
        assert!(matches!(rounds.start("c/1", "c", &m), Start::Busy));
        assert!(rounds.finish(a1, at(), Vec::new()));
        let _c1 = run(rounds.start("c/1", "c", &m));
        assert!(matches!(rounds.start("a/3", "a", &m), Start::Busy));
    }

    #[test]
    fn a_round_in_flight_is_not_started_twice_and_its_result_is_taken_once() {
        let rounds = Rounds::new(Limits::default());
        let m = measuring(1);
        let ticket = run(rounds.start("ns/m", "ns", &m));
        assert!(matches!(rounds.start("ns/m", "ns", &m), Start::InFlight));
        assert_eq!(rounds.take_finished("ns/m"), None, "still in flight");
        assert!(matches!(rounds.start("ns/m", "ns", &m), Start::InFlight));
        assert!(rounds.finish(ticket, at(), Vec::new()));
        let finished = rounds.take_finished("ns/m").expect("the result");
        assert_eq!(finished.measuring, m);
        assert_eq!(finished.at, at());
        assert_eq!(rounds.take_finished("ns/m"), None, "taken once");
        assert_eq!(rounds.kept(), 0);
    }

    #[test]
    fn a_round_for_something_else_replaces_the_one_in_flight() {
        let rounds = Rounds::new(Limits {
            pool: 1,
            per_namespace: 1,
            ..Limits::default()
        });
        let old = run(rounds.start("ns/m", "ns", &measuring(1)));
        // The old round's slot is given back only when its task ends (it is
        // cancelled); until then the new one waits for a slot.
        assert!(matches!(
            rounds.start("ns/m", "ns", &measuring(2)),
            Start::Busy
        ));
        assert!(
            !rounds.finish(old, at(), Vec::new()),
            "the replaced round's result is dropped"
        );
        let new = run(rounds.start("ns/m", "ns", &measuring(2)));
        assert!(rounds.finish(new, at(), Vec::new()));
        assert_eq!(
            rounds.take_finished("ns/m").map(|f| f.measuring.revision),
            Some(2)
        );
    }

    #[tokio::test]
    async fn forgetting_cancels_the_round_in_flight_and_frees_its_slot() {
        let rounds = Arc::new(Rounds::new(Limits {
            pool: 1,
            per_namespace: 1,
            ..Limits::default()
        }));
        let ticket = run(rounds.start("ns/gone", "ns", &measuring(1)));
        let id = ticket.id();
        let task = tokio::spawn({
            let rounds = rounds.clone();
            async move {
                // An endpoint that never answers.
                std::future::pending::<()>().await;
                rounds.finish(ticket, at(), Vec::new());
            }
        });
        rounds.spawned("ns/gone", id, task.abort_handle());
        assert!(matches!(
            rounds.start("other/m", "other", &measuring(1)),
            Start::Busy
        ));
        rounds.forget("ns/gone");
        assert_eq!(rounds.kept(), 0);
        assert!(task.await.unwrap_err().is_cancelled());
        let _other = run(rounds.start("other/m", "other", &measuring(1)));
    }

    #[test]
    fn a_result_given_back_is_taken_by_the_next_pass() {
        let rounds = Rounds::new(Limits::default());
        let ticket = run(rounds.start("ns/m", "ns", &measuring(1)));
        assert!(rounds.finish(ticket, at(), Vec::new()));
        let finished = rounds.take_finished("ns/m").expect("the result");
        rounds.give_back("ns/m", finished.clone());
        assert_eq!(rounds.take_finished("ns/m"), Some(finished.clone()));
        // Not over a round started meanwhile.
        let _ticket = run(rounds.start("ns/m", "ns", &measuring(2)));
        rounds.give_back("ns/m", finished);
        assert_eq!(rounds.take_finished("ns/m"), None);
        assert!(matches!(
            rounds.start("ns/m", "ns", &measuring(2)),
            Start::InFlight
        ));
    }

    #[test]
    fn a_result_for_a_forgotten_object_is_dropped() {
        let rounds = Rounds::new(Limits::default());
        let ticket = run(rounds.start("ns/gone", "ns", &measuring(1)));
        rounds.forget("ns/gone");
        assert!(!rounds.finish(ticket, at(), Vec::new()));
        assert_eq!(rounds.kept(), 0, "nothing kept for a deleted object");
    }
}
