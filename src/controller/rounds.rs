//! A bounded share of the reconcile workers for metric rounds. A round
//! waits for Prometheus (up to `timeoutSeconds`, at most 60 s); endpoints
//! that never answer must not hold the workers other ModelDeployments'
//! reconciles and rollbacks need. At most `pool` rounds run at once, and at
//! most `per_namespace` of one namespace: a reconcile whose round is due
//! when no slot is free does not wait for one; it leaves the analysis as it
//! is (no verdict, no promotion) and comes back after `BUSY_RETRY`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// When a reconcile that found no free slot looks again.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);

/// How many rounds may run at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub pool: usize,
    pub per_namespace: usize,
}

impl Default for Limits {
    /// Half of the default 16 workers; two per namespace.
    fn default() -> Self {
        Self {
            pool: 8,
            per_namespace: 2,
        }
    }
}

pub struct Rounds {
    pool: Arc<Semaphore>,
    per_namespace: usize,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// A running round's slot, given back when dropped.
pub struct Slot {
    namespace: String,
    running: Arc<Mutex<HashMap<String, usize>>>,
    _permit: OwnedSemaphorePermit,
}

impl Rounds {
    pub fn new(limits: Limits) -> Self {
        Self {
            pool: Arc::new(Semaphore::new(limits.pool.max(1))),
            per_namespace: limits.per_namespace.max(1),
            running: Arc::default(),
        }
    }

    /// A slot for a round in `namespace`, or `None` when the pool or the
    /// namespace's share is used up. Never waits.
    pub fn try_start(&self, namespace: &str) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let count = running.entry(namespace.to_string()).or_insert(0);
        if *count >= self.per_namespace {
            return None;
        }
        let permit = self.pool.clone().try_acquire_owned().ok()?;
        *count += 1;
        Some(Slot {
            namespace: namespace.to_string(),
            running: self.running.clone(),
            _permit: permit,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = running.get_mut(&self.namespace) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_gets_its_share_and_the_pool_is_bounded() {
        let rounds = Rounds::new(Limits {
            pool: 3,
            per_namespace: 2,
        });
        let a1 = rounds.try_start("a").expect("a's first");
        let _a2 = rounds.try_start("a").expect("a's second");
        assert!(rounds.try_start("a").is_none(), "a's share is used up");
        let _b1 = rounds.try_start("b").expect("b still gets one");
        assert!(rounds.try_start("c").is_none(), "the pool is used up");
        drop(a1);
        let _c1 = rounds.try_start("c").expect("a slot came back");
        assert!(rounds.try_start("a").is_none(), "the pool is used up again");
    }
}
