//! Every pod event of a namespace, as the API server sends them, for
//! assertions that must hold at each event (pods created, pods at once,
//! GPUs requested).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;

/// One event after the first list, with the pods as they are after it
/// (by name).
pub enum Change<'a> {
    /// The first list is in.
    Listed,
    /// A pod was created (`new`) or changed.
    Applied {
        pod: &'a Pod,
        new: bool,
    },
    Deleted {
        name: &'a str,
    },
}

/// Calls `on_event` at every event after the first list, until the task is
/// aborted; returns once that list is in, so no event after the call is
/// missed.
pub async fn watch_pod_events<F>(pods: Api<Pod>, mut on_event: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut(&BTreeMap<String, Pod>, Change<'_>) + Send + 'static,
{
    let listed = Arc::new(Mutex::new(false));
    let seen_list = listed.clone();
    let task = tokio::spawn(async move {
        let mut store: BTreeMap<String, Pod> = BTreeMap::new();
        let mut listing = BTreeMap::new();
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let is_listed = *seen_list.lock().unwrap();
            match event {
                watcher::Event::Init => listing.clear(),
                watcher::Event::InitApply(pod) => {
                    listing.insert(name(&pod), pod);
                }
                watcher::Event::InitDone => {
                    store = std::mem::take(&mut listing);
                    *seen_list.lock().unwrap() = true;
                    on_event(&store, Change::Listed);
                }
                watcher::Event::Apply(pod) if is_listed => {
                    let key = name(&pod);
                    let new = !store.contains_key(&key);
                    store.insert(key.clone(), pod);
                    on_event(
                        &store,
                        Change::Applied {
                            pod: &store[&key],
                            new,
                        },
                    );
                }
                watcher::Event::Delete(pod) if is_listed => {
                    let key = name(&pod);
                    store.remove(&key);
                    on_event(&store, Change::Deleted { name: &key });
                }
                watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
            }
        }
    });
    super::eventually(
        "the pod watch's first list",
        Duration::from_secs(60),
        || async { *listed.lock().unwrap() },
    )
    .await;
    task
}

/// What the watch saw since it listed the namespace.
#[derive(Debug, Default)]
pub struct PodLog {
    /// (uid, revision label) of every pod created after the first list.
    pub created: Vec<(String, String)>,
    /// The most pods alive (not terminating) at any one event.
    pub most_alive: usize,
}

/// Logs the pods of `pods` created, and the most alive at once, until the
/// task is aborted.
pub async fn watch_pods(pods: Api<Pod>) -> (Arc<Mutex<PodLog>>, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(PodLog::default()));
    let out = log.clone();
    let task = watch_pod_events(pods, move |store, change| {
        let mut log = log.lock().unwrap();
        if let Change::Applied { pod, new: true } = change {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            log.created.push((uid, revision(pod)));
        }
        let alive = store
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        log.most_alive = log.most_alive.max(alive);
    })
    .await;
    (out, task)
}

/// The pod's `mlops.dev/revision` label.
pub fn revision(pod: &Pod) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("mlops.dev/revision"))
        .cloned()
        .unwrap_or_default()
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}
