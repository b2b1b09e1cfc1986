//! The order in which ModelDeployments are reconciled: first in, first out
//! within a namespace, round-robin between namespaces (issue 23, item 6).
//!
//! "First in" is the object that came in first, not the newest trigger: an
//! object keeps the place it got when the queue first saw it (for a burst,
//! its creation order; after a start, the list's). Ordered by trigger time
//! instead, a model's follow-up pass (its Deployment became Available) went
//! behind every model of the burst created meanwhile, and waited for all
//! their first passes (measured: median 43 s at N=1,000).
//!
//! kube-runtime's scheduler hands out requests that are due at the same
//! moment newest first (its DelayQueue's expired stack and wheel slots are
//! LIFO), so in a burst an early model's trigger waited until the inflow
//! stopped, and one namespace's burst held back every other namespace. So
//! every trigger goes through this queue first, and it releases a request to
//! kube-runtime only while fewer than `concurrency` passes are released or
//! running: kube's scheduler then never holds more than that many due
//! requests, and its order no longer matters.
//!
//! Requeues (`Action::requeue`, the error backoff) stay on kube's timers:
//! `Action` does not expose its delay. When such a timer fires, kube starts
//! a pass this queue did not release; that pass does nothing but queue the
//! object (`Queue::admit`), so it waits its turn like any trigger.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::Notify;

use crate::cache::model::ModelRef;

/// The queue's bookkeeping, without locks or time: what the tests drive.
#[derive(Debug, Default)]
struct Fair {
    /// How many may be released or running at once; 0 means no limit (as
    /// kube-runtime's `concurrency`).
    limit: usize,
    /// Per namespace, the objects waiting, by age.
    waiting: HashMap<String, BTreeMap<u64, ModelRef>>,
    /// Every live object's place in line: when the queue first saw it.
    /// Dropped when the object is deleted.
    ages: HashMap<ModelRef, u64>,
    next_age: u64,
    /// The namespaces with objects waiting, whose turn is next first.
    turns: VecDeque<String>,
    /// Everything in `waiting`, to drop repeated triggers.
    queued: HashSet<ModelRef>,
    /// Handed to kube-runtime, its pass not yet started.
    released: HashSet<ModelRef>,
    running: HashSet<ModelRef>,
    /// Triggered while running: queued again when its pass ends, since that
    /// pass may have read the cache before the change.
    again: HashSet<ModelRef>,
}

impl Fair {
    fn new(limit: usize) -> Self {
        Self {
            limit: if limit == 0 { usize::MAX } else { limit },
            ..Self::default()
        }
    }

    /// The object is due. A repeated trigger changes nothing; one
    /// that arrives after its release but before its pass starts needs
    /// nothing, since the pass reads the cache the trigger came from.
    fn push(&mut self, object: ModelRef) {
        if self.running.contains(&object) {
            self.again.insert(object);
            return;
        }
        if self.released.contains(&object) || !self.queued.insert(object.clone()) {
            return;
        }
        let next_age = &mut self.next_age;
        let age = *self.ages.entry(object.clone()).or_insert_with(|| {
            *next_age += 1;
            *next_age
        });
        let namespace = object.namespace.clone().unwrap_or_default();
        let line = self.waiting.entry(namespace.clone()).or_default();
        if line.is_empty() {
            self.turns.push_back(namespace);
        }
        line.insert(age, object);
    }

    /// The next object to hand to kube-runtime: the oldest of the namespace
    /// whose turn it is, while there is room.
    fn pop(&mut self) -> Option<ModelRef> {
        if self.released.len() + self.running.len() >= self.limit {
            return None;
        }
        let namespace = self.turns.pop_front()?;
        let line = self.waiting.get_mut(&namespace)?;
        let (_, object) = line.pop_first()?;
        if line.is_empty() {
            self.waiting.remove(&namespace);
        } else {
            self.turns.push_back(namespace);
        }
        self.queued.remove(&object);
        self.released.insert(object.clone());
        Some(object)
    }

    /// kube-runtime starts a pass: true when this queue released it. Any
    /// other (a requeue's timer fired) is queued instead of run.
    fn start(&mut self, object: &ModelRef) -> bool {
        if self.released.remove(object) {
            self.running.insert(object.clone());
            true
        } else {
            self.push(object.clone());
            false
        }
    }

    fn finish(&mut self, object: &ModelRef) {
        self.running.remove(object);
        if self.again.remove(object) {
            self.push(object.clone());
        }
    }

    /// The object was deleted (or kube-runtime found a released one gone
    /// from the cache and ran nothing): all it held goes. A pass still
    /// running ends as usual.
    fn forget(&mut self, object: &ModelRef) {
        self.released.remove(object);
        self.again.remove(object);
        let age = self.ages.remove(object);
        if self.queued.remove(object) {
            let namespace = object.namespace.clone().unwrap_or_default();
            if let (Some(line), Some(age)) = (self.waiting.get_mut(&namespace), age) {
                line.remove(&age);
                if line.is_empty() {
                    self.waiting.remove(&namespace);
                    self.turns.retain(|ns| *ns != namespace);
                }
            }
        }
    }

    fn entries(&self) -> usize {
        self.ages.len()
            + self.queued.len()
            + self.released.len()
            + self.running.len()
            + self.again.len()
    }
}

/// The queue one controller's triggers pass through.
pub(super) struct Queue {
    fair: Mutex<Fair>,
    /// Wakes the request stream when room frees up or a requeue arrives.
    changed: Notify,
}

/// A running pass this queue released; its end frees the place, also when
/// the pass panics.
pub(super) struct Pass {
    queue: Arc<Queue>,
    object: ModelRef,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.queue.fair().finish(&self.object);
        self.queue.changed.notify_one();
    }
}

impl Queue {
    /// `concurrency` as kube-runtime's: 0 is no limit.
    pub(super) fn new(concurrency: u16) -> Arc<Self> {
        Arc::new(Self {
            fair: Mutex::new(Fair::new(usize::from(concurrency))),
            changed: Notify::new(),
        })
    }

    fn fair(&self) -> std::sync::MutexGuard<'_, Fair> {
        self.fair.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called as kube-runtime starts a pass: the pass runs while the
    /// returned guard lives, or, when this queue did not release it, is
    /// queued and skipped (`None`).
    pub(super) fn admit(self: &Arc<Self>, object: ModelRef) -> Option<Pass> {
        let started = self.fair().start(&object);
        if !started {
            self.changed.notify_one();
            return None;
        }
        Some(Pass {
            queue: self.clone(),
            object,
        })
    }

    /// A deleted object, from its watch or kube-runtime's `ObjectNotFound`.
    pub(super) fn forget(&self, namespace: Option<&str>, name: &str) {
        let object = ObjectRef::new(name);
        let object = match namespace {
            Some(ns) => object.within(ns),
            None => object,
        };
        self.fair().forget(&object);
        self.changed.notify_one();
    }

    /// For `model_operator_state_entries`.
    pub(super) fn entries(&self) -> usize {
        self.fair().entries()
    }

    /// The requests for `Controller::reconcile_on`: `triggers` in this
    /// queue's order. The triggers' errors are the watches' (each already
    /// backs off on its own), logged here since they no longer reach
    /// kube-runtime.
    pub(super) fn requests(
        self: Arc<Self>,
        triggers: impl Stream<Item = Result<ModelRef, watcher::Error>> + Send + 'static,
    ) -> impl Stream<Item = ModelRef> + Send + 'static {
        let triggers = triggers.boxed().fuse();
        futures::stream::unfold((self, triggers), |(queue, mut triggers)| async move {
            loop {
                let next = queue.fair().pop();
                if let Some(object) = next {
                    return Some((object, (queue, triggers)));
                }
                tokio::select! {
                    trigger = triggers.next() => match trigger {
                        Some(Ok(object)) => queue.fair().push(object),
                        Some(Err(error)) => {
                            tracing::warn!(error = %error, "controller stream error");
                        }
                        None => return None,
                    },
                    () = queue.changed.notified() => {}
                }
            }
        })
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
