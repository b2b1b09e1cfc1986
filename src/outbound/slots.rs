//! Who gets a free analysis slot: a pure bookkeeping of slots held per
//! namespace and of the ModelDeployments waiting for one, so that a slot
//! goes by turns, never by a lottery of whose retry comes first.
//!
//! - **Turns.** A slot given back goes at once to a waiting ModelDeployment:
//!   of the namespace holding the fewest slots, and among equals the next
//!   namespace after the one served last (round-robin); within a namespace,
//!   first come first served. It is held for that ModelDeployment
//!   (`RESERVED_FOR`) until its next pass (`BUSY_RETRY` after it was turned
//!   away) takes it; a newcomer cannot take it first.
//! - **Room for newcomers.** A namespace may run up to its share of rounds
//!   while slots are free. When none is free and a namespace that runs no
//!   round asks, the newest round of the namespace running the most (one
//!   beyond its first) is cancelled, and its slot handed to the newcomer:
//!   rounds of a hanging Prometheus last up to 60 s, so without this a few
//!   namespaces whose endpoints hang (two rounds each) would hold the whole
//!   pool and every other team would wait for their timeouts. A cancelled
//!   round is run again later, never counted (as one lost in a restart).
//! - **Staleness.** A ModelDeployment that stopped asking (promoted,
//!   deleted, edited) leaves the queue after `STALE`; a slot it was handed
//!   and never took goes to the next after `RESERVED_FOR`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A ModelDeployment turned away asks again after `rounds::BUSY_RETRY`
/// (2 s); three of those missed and it no longer waits.
pub const STALE: Duration = Duration::from_secs(6);
/// How long a slot handed to a waiting ModelDeployment is kept for it.
pub const RESERVED_FOR: Duration = Duration::from_secs(6);

/// What `Slots::request` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The slot is the asker's until `release`.
    Run,
    /// It waits for its turn and asks again; when `preempt` names a
    /// ModelDeployment, cancelling that one's round frees its slot for it.
    Busy { preempt: Option<String> },
}

/// The slots of the pool and who holds or waits for them.
#[derive(Debug)]
pub struct Slots {
    pool: usize,
    per_namespace: usize,
    /// Who holds slots (running rounds and reservations), per namespace,
    /// oldest first.
    held: HashMap<String, Vec<String>>,
    /// Waiting ModelDeployments (`namespace/name`) per namespace, oldest
    /// first, with when each last asked.
    waiting: BTreeMap<String, VecDeque<(String, Instant)>>,
    /// Slots handed to a waiting ModelDeployment: its namespace, and when.
    reserved: HashMap<String, (String, Instant)>,
    /// Rounds being cancelled for a newcomer: their slots are on the way.
    preempted: HashSet<String>,
    /// The namespace served last; the next turn starts after it.
    last_served: Option<String>,
}

impl Slots {
    pub fn new(pool: usize, per_namespace: usize) -> Self {
        Self {
            pool: pool.max(1),
            per_namespace: per_namespace.max(1),
            held: HashMap::new(),
            waiting: BTreeMap::new(),
            reserved: HashMap::new(),
            preempted: HashSet::new(),
            last_served: None,
        }
    }

    /// A slot for `object` of `namespace` now, or its place in the queue.
    pub fn request(&mut self, object: &str, namespace: &str, now: Instant) -> Decision {
        self.expire(now);
        if self.reserved.remove(object).is_some() {
            return Decision::Run;
        }
        if self.may_take(namespace) {
            self.dequeue(object, namespace);
            self.hold(object, namespace);
            return Decision::Run;
        }
        let queue = self.waiting.entry(namespace.to_string()).or_default();
        match queue.iter_mut().find(|(o, _)| o == object) {
            Some((_, asked)) => *asked = now,
            None => queue.push_back((object.to_string(), now)),
        }
        Decision::Busy {
            preempt: self.victim(),
        }
    }

    /// `object`'s slot given back: handed to whoever's turn it is.
    pub fn release(&mut self, object: &str, namespace: &str, now: Instant) {
        self.unhold(object, namespace);
        self.preempted.remove(object);
        self.expire(now);
    }

    /// `object` no longer wants a slot (deleted): out of the queue, and a
    /// slot handed to it goes to the next.
    pub fn forget(&mut self, object: &str, now: Instant) {
        self.waiting.retain(|_, queue| {
            queue.retain(|(o, _)| o != object);
            !queue.is_empty()
        });
        if let Some((namespace, _)) = self.reserved.remove(object) {
            self.release(object, &namespace, now);
        }
    }

    /// ModelDeployments waiting, and slots handed out but not yet taken.
    pub fn entries(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum::<usize>() + self.reserved.len()
    }

    fn held_by(&self, namespace: &str) -> usize {
        self.held.get(namespace).map_or(0, Vec::len)
    }

    fn total(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    /// Whether `namespace` may take a slot now: one is free and the
    /// namespace is under its share.
    fn may_take(&self, namespace: &str) -> bool {
        self.total() < self.pool && self.held_by(namespace) < self.per_namespace
    }

    fn hold(&mut self, object: &str, namespace: &str) {
        let holders = self.held.entry(namespace.to_string()).or_default();
        holders.push(object.to_string());
    }

    fn unhold(&mut self, object: &str, namespace: &str) {
        if let Some(holders) = self.held.get_mut(namespace) {
            if let Some(at) = holders.iter().rposition(|o| o == object) {
                holders.remove(at);
            }
            if holders.is_empty() {
                self.held.remove(namespace);
            }
        }
    }

    fn dequeue(&mut self, object: &str, namespace: &str) {
        if let Some(queue) = self.waiting.get_mut(namespace) {
            queue.retain(|(o, _)| o != object);
            if queue.is_empty() {
                self.waiting.remove(namespace);
            }
        }
    }

    /// A round to cancel so that a waiting namespace that holds no slot
    /// gets one: the newest round of the namespace holding the most, when
    /// that is more than one. None while enough cancellations are on their
    /// way already, or when every namespace holds one slot at most.
    fn victim(&mut self) -> Option<String> {
        let starving = self
            .waiting
            .keys()
            .filter(|ns| self.held_by(ns) == 0)
            .count();
        if self.total() < self.pool || starving <= self.preempted.len() {
            return None;
        }
        let victim = self
            .held
            .iter()
            .map(|(ns, holders)| {
                let cancellable = holders
                    .iter()
                    .filter(|o| !self.preempted.contains(*o) && !self.reserved.contains_key(*o))
                    .count();
                (cancellable, ns)
            })
            .filter(|(cancellable, ns)| *cancellable > 1 && self.held_by(ns) > 1)
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
            .and_then(|(_, ns)| {
                self.held
                    .get(ns)?
                    .iter()
                    .rev()
                    .find(|o| !self.preempted.contains(*o) && !self.reserved.contains_key(*o))
            })?
            .clone();
        self.preempted.insert(victim.clone());
        Some(victim)
    }

    /// Drops waiters that stopped asking, gives back slots handed out but
    /// not taken in time, and hands free slots out by turns.
    fn expire(&mut self, now: Instant) {
        self.waiting.retain(|_, queue| {
            queue.retain(|(_, asked)| now.saturating_duration_since(*asked) < STALE);
            !queue.is_empty()
        });
        let expired: Vec<(String, String)> = self
            .reserved
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= RESERVED_FOR)
            .map(|(object, (namespace, _))| (object.clone(), namespace.clone()))
            .collect();
        for (object, namespace) in expired {
            self.reserved.remove(&object);
            self.unhold(&object, &namespace);
        }
        while let Some(namespace) = self.next_turn() {
            let Some(queue) = self.waiting.get_mut(&namespace) else {
                break;
            };
            let Some((object, _)) = queue.pop_front() else {
                self.waiting.remove(&namespace);
                continue;
            };
            if queue.is_empty() {
                self.waiting.remove(&namespace);
            }
            self.hold(&object, &namespace);
            self.reserved.insert(object, (namespace.clone(), now));
            self.last_served = Some(namespace);
        }
    }

    /// The waiting namespace whose turn it is: of those that may take a
    /// slot, the one holding fewest; among equals the first after the one
    /// served last, in name order.
    fn next_turn(&self) -> Option<String> {
        let after = self.last_served.as_deref().unwrap_or("");
        self.waiting
            .keys()
            .filter(|ns| self.may_take(ns))
            .min_by_key(|ns| (self.held_by(ns), ns.as_str() <= after, ns.as_str()))
            .cloned()
    }
}

#[cfg(test)]
mod tests;
