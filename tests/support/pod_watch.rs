//! Every pod event of a namespace, as the API server sends them, for
//! assertions that must hold at each event (pods created, pods at once).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;

/// What the watch saw since it listed the namespace.
#[derive(Debug, Default)]
pub struct PodLog {
    /// (uid, revision label) of every pod created after the first list.
    pub created: Vec<(String, String)>,
    /// The most pods alive (not terminating) at any one event.
    pub most_alive: usize,
    /// The first list is in: from now on every creation is seen.
    pub listed: bool,
}

/// Watches the pods of `pods` until the task is aborted; returns once it
/// has listed them, so no creation after the call is missed.
pub async fn watch_pods(pods: Api<Pod>) -> (Arc<Mutex<PodLog>>, tokio::task::JoinHandle<()>) {
    let (log, task) = spawn_watch(pods);
    super::eventually(
        "the pod watch's first list",
        Duration::from_secs(60),
        || async { log.lock().unwrap().listed },
    )
    .await;
    (log, task)
}

fn spawn_watch(pods: Api<Pod>) -> (Arc<Mutex<PodLog>>, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(PodLog::default()));
    let out = log.clone();
    let task = tokio::spawn(async move {
        let mut alive: BTreeMap<String, bool> = BTreeMap::new();
        let mut listing = BTreeMap::new();
        let mut listed = false;
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            match event {
                watcher::Event::Init => listing.clear(),
                watcher::Event::InitApply(pod) => {
                    listing.insert(uid(&pod), pod.metadata.deletion_timestamp.is_none());
                }
                watcher::Event::InitDone => {
                    alive = std::mem::take(&mut listing);
                    listed = true;
                    log.lock().unwrap().listed = true;
                }
                watcher::Event::Apply(pod) => {
                    let uid = uid(&pod);
                    if listed && !alive.contains_key(&uid) {
                        let revision = pod
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("mlops.dev/revision"))
                            .cloned()
                            .unwrap_or_default();
                        log.lock().unwrap().created.push((uid.clone(), revision));
                    }
                    alive.insert(uid, pod.metadata.deletion_timestamp.is_none());
                }
                watcher::Event::Delete(pod) => {
                    alive.remove(&uid(&pod));
                }
            }
            if listed {
                let now = alive.values().filter(|a| **a).count();
                let mut log = log.lock().unwrap();
                log.most_alive = log.most_alive.max(now);
            }
        }
    });
    (out, task)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}
