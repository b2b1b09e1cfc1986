//! Revision snapshots a pass has read, kept within a byte budget.
//!
//! The ControllerRevision cache holds metadata only: a snapshot is a whole
//! served version (up to the spec's bound, `api::bounds`), and with up to
//! 100 revisions per ModelDeployment one team could otherwise fill the
//! operator's memory, on every restart again (issue 24). A pass reads the
//! few snapshots it needs (the stable revision, the one running, a canary's)
//! with a GET, and keeps them here so a canary's passes read the stable
//! revision once. A snapshot never changes (the API server refuses edits of
//! a ControllerRevision's data) and its key carries its content hash, so an
//! entry is never stale; the oldest go first once the budget is spent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The most snapshot JSON kept, all ModelDeployments together.
pub const BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// namespace, ModelDeployment name, revision number, served hash.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub namespace: String,
    pub name: String,
    pub number: i64,
    pub hash: String,
}

/// Snapshots as compact JSON, oldest first out.
pub struct Snapshots {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Arc<str>>,
    order: VecDeque<Key>,
    bytes: usize,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self::with_budget(BUDGET_BYTES)
    }
}

impl Snapshots {
    pub fn with_budget(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<str>> {
        self.lock().entries.get(key).cloned()
    }

    /// Keeps `json` unless it alone is over the budget; older entries make
    /// room.
    pub fn insert(&self, key: Key, json: Arc<str>) {
        if json.len() > self.budget {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.contains_key(&key) {
            return;
        }
        inner.bytes += json.len();
        inner.entries.insert(key.clone(), json);
        inner.order.push_back(key);
        while inner.bytes > self.budget {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.len();
            }
        }
    }

    /// Drops a deleted ModelDeployment's snapshots.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut inner = self.lock();
        let Inner {
            entries,
            order,
            bytes,
        } = &mut *inner;
        order.retain(|k| {
            let gone = k.namespace == namespace && k.name == name;
            if gone && let Some(json) = entries.remove(k) {
                *bytes -= json.len();
            }
            !gone
        });
    }

    /// Entries kept, for `model_operator_state_entries`.
    pub fn entries(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic mid-update; the counts are
        // repaired by the next eviction at worst.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, number: i64) -> Key {
        Key {
            namespace: "ns".into(),
            name: name.into(),
            number,
            hash: format!("h{number}"),
        }
    }

    #[test]
    fn the_oldest_go_first_once_the_budget_is_spent() {
        let snapshots = Snapshots::with_budget(10);
        snapshots.insert(key("a", 1), "aaaa".into());
        snapshots.insert(key("a", 2), "bbbb".into());
        snapshots.insert(key("a", 3), "cccc".into());
        assert_eq!(snapshots.get(&key("a", 1)), None);
        assert_eq!(snapshots.get(&key("a", 3)).as_deref(), Some("cccc"));
        assert_eq!(snapshots.entries(), 2);
        snapshots.insert(key("a", 4), "x".repeat(11).into());
        assert_eq!(snapshots.get(&key("a", 4)), None, "over the budget alone");
        assert_eq!(snapshots.entries(), 2);
    }

    #[test]
    fn a_deleted_model_takes_its_snapshots_along() {
        let snapshots = Snapshots::with_budget(100);
        snapshots.insert(key("a", 1), "aaaa".into());
        snapshots.insert(key("b", 1), "bbbb".into());
        snapshots.forget("ns", "a");
        assert_eq!(snapshots.get(&key("a", 1)), None);
        assert!(snapshots.get(&key("b", 1)).is_some());
        snapshots.insert(key("c", 1), "x".repeat(96).into());
        assert!(
            snapshots.get(&key("b", 1)).is_some(),
            "a's bytes were freed"
        );
    }
}
