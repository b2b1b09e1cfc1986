//! What the operator reports as Events, read the way the tests assert it.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};

use super::eventually;

/// The Warning Events about object `regarding` (any object: `None`) in the
/// namespace, as (reason, note).
pub async fn warnings(
    client: &Client,
    namespace: &str,
    regarding: Option<&str>,
) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            regarding.is_none() || e.regarding.as_ref().and_then(|r| r.name.as_deref()) == regarding
        })
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Waits until a Warning Event about `regarding` has `reason` and a note
/// containing `note` (`""`: any); returns it as (reason, note). Events follow
/// the status write, so a test that has seen the status still waits.
pub async fn warning_event(
    client: &Client,
    namespace: &str,
    regarding: &str,
    reason: &str,
    note: &str,
    timeout: Duration,
) -> (String, String) {
    let what = format!("a Warning Event about {regarding} says {reason}: ...{note}...");
    eventually(&what, timeout, || async {
        let events = warnings(client, namespace, Some(regarding)).await;
        match events.iter().find(|(r, n)| r == reason && n.contains(note)) {
            Some(found) => Ok(found.clone()),
            None => Err(events),
        }
    })
    .await
}
