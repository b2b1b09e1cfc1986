//! A reflector store with an index by ModelDeployment (namespace and
//! instance label), so finding one instance's pods or revisions costs a hash
//! lookup instead of a scan of the whole cache: with a scan, a resync of n
//! ModelDeployments cost O(n²) (1,000 objects: a million label comparisons
//! per cache per resync).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher;

use crate::resources::labels::INSTANCE;

/// (namespace, instance label) → names of the objects carrying it.
#[derive(Default)]
struct Index {
    names: HashMap<(String, String), BTreeSet<String>>,
    /// (namespace, name) → instance, to drop an object whose label changed.
    instance_of: HashMap<(String, String), String>,
}

impl Index {
    fn insert<K: Resource>(&mut self, obj: &K) {
        let Some((namespace, name)) = key(obj) else {
            return;
        };
        self.remove(&namespace, &name);
        let Some(instance) = obj.meta().labels.as_ref().and_then(|l| l.get(INSTANCE)) else {
            return;
        };
        self.names
            .entry((namespace.clone(), instance.clone()))
            .or_default()
            .insert(name.clone());
        self.instance_of.insert((namespace, name), instance.clone());
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let object = (namespace.to_string(), name.to_string());
        let Some(instance) = self.instance_of.remove(&object) else {
            return;
        };
        let group = (object.0, instance);
        if let Some(names) = self.names.get_mut(&group) {
            names.remove(name);
            if names.is_empty() {
                self.names.remove(&group);
            }
        }
    }
}

fn key<K: Resource>(obj: &K) -> Option<(String, String)> {
    Some((obj.meta().namespace.clone()?, obj.meta().name.clone()?))
}

/// The live index, and the one being filled by a (re)list: like the store,
/// the index switches to a relist's result only when it is complete.
#[derive(Default)]
struct Entries {
    live: Index,
    relisting: Option<Index>,
}

/// A store plus its instance index; cloning shares both.
pub struct Indexed<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    index: Arc<RwLock<Entries>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Indexed<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            index: self.index.clone(),
        }
    }
}

/// Feeds both the store and the index from watcher events.
pub struct IndexedWriter<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    index: Arc<RwLock<Entries>>,
}

/// An empty indexed store and the writer that fills it.
pub fn indexed_store<K>() -> (Indexed<K>, IndexedWriter<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, writer) = reflector::store();
    let index = Arc::new(RwLock::new(Entries::default()));
    (
        Indexed {
            store,
            index: index.clone(),
        },
        IndexedWriter { writer, index },
    )
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> IndexedWriter<K> {
    /// What `reflector` does with each event, for the index as well.
    pub fn apply_watcher_event(&mut self, event: &watcher::Event<K>) {
        {
            // A poisoned lock only means another thread panicked mid-update;
            // the next relist repairs whatever it left.
            let mut state = self.index.write().unwrap_or_else(|p| p.into_inner());
            match event {
                watcher::Event::Apply(obj) => state.live.insert(obj),
                watcher::Event::Delete(obj) => {
                    if let Some((namespace, name)) = key(obj) {
                        state.live.remove(&namespace, &name);
                    }
                }
                watcher::Event::Init => state.relisting = Some(Index::default()),
                watcher::Event::InitApply(obj) => state
                    .relisting
                    .get_or_insert_with(Index::default)
                    .insert(obj),
                watcher::Event::InitDone => {
                    if let Some(index) = state.relisting.take() {
                        state.live = index;
                    }
                }
            }
        }
        self.writer.apply_watcher_event(event);
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Indexed<K> {
    /// Objects of one ModelDeployment (by the instance label) in a namespace.
    pub fn of_instance(&self, namespace: &str, instance: &str) -> Vec<Arc<K>> {
        let state = self.index.read().unwrap_or_else(|p| p.into_inner());
        let Some(names) = state
            .live
            .names
            .get(&(namespace.to_string(), instance.to_string()))
        else {
            return Vec::new();
        };
        // The index is updated just before the store; an object it names
        // that the store does not hold yet is simply not there yet.
        names
            .iter()
            .filter_map(|name| self.store.get(&ObjectRef::new(name).within(namespace)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, instance: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {
            "namespace": namespace, "name": name,
            "labels": {INSTANCE: instance},
        }}))
        .unwrap()
    }

    fn names(found: Vec<Arc<Pod>>) -> Vec<String> {
        let mut names: Vec<String> = found
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn finds_by_namespace_and_instance_and_follows_changes() {
        let (indexed, mut writer) = indexed_store::<Pod>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for p in [
            pod("a", "p1", "fraud"),
            pod("a", "p2", "fraud"),
            pod("a", "p3", "churn"),
            pod("b", "p1", "fraud"),
        ] {
            writer.apply_watcher_event(&watcher::Event::InitApply(p));
        }
        // Nothing is visible before the list completes, as in the store.
        assert!(indexed.of_instance("a", "fraud").is_empty());
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(names(indexed.of_instance("a", "fraud")), ["p1", "p2"]);
        assert_eq!(names(indexed.of_instance("b", "fraud")), ["p1"]);

        // A label change moves the object; a delete removes it.
        writer.apply_watcher_event(&watcher::Event::Apply(pod("a", "p2", "churn")));
        writer.apply_watcher_event(&watcher::Event::Delete(pod("a", "p3", "churn")));
        assert_eq!(names(indexed.of_instance("a", "fraud")), ["p1"]);
        assert_eq!(names(indexed.of_instance("a", "churn")), ["p2"]);

        // A relist replaces everything: what it did not list is gone.
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(pod("a", "p9", "fraud")));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(names(indexed.of_instance("a", "fraud")), ["p9"]);
        assert!(indexed.of_instance("a", "churn").is_empty());
        assert!(indexed.of_instance("b", "fraud").is_empty());
    }

    #[test]
    fn agrees_with_a_scan_of_the_store() {
        let (indexed, mut writer) = indexed_store::<Pod>();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for i in 0..200 {
            let p = pod(
                &format!("ns{}", i % 3),
                &format!("p{i}"),
                &format!("m{}", i % 7),
            );
            writer.apply_watcher_event(&watcher::Event::Apply(p));
        }
        for ns in ["ns0", "ns1", "ns2"] {
            for m in 0..7 {
                let instance = format!("m{m}");
                let scanned: Vec<Arc<Pod>> = indexed
                    .store
                    .state()
                    .into_iter()
                    .filter(|p| {
                        p.metadata.namespace.as_deref() == Some(ns)
                            && p.metadata.labels.as_ref().and_then(|l| l.get(INSTANCE))
                                == Some(&instance)
                    })
                    .collect();
                assert_eq!(names(indexed.of_instance(ns, &instance)), names(scanned));
            }
        }
    }
}
