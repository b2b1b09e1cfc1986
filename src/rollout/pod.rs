//! What the operator keeps of a pod: the fields health and the cache's
//! index read, deserialized straight from the watch. A `Pod` of
//! k8s-openapi is several KiB even when trimmed (its spec and statuses are
//! large inline structs); at 1,000 models that was the biggest cache.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::foreign::cut;

/// A pod as the operator watches it. Everything not named here is skipped
/// while decoding.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct WatchedPod {
    /// Only name, namespace, labels, owners and deletion are kept
    /// (`keep_read_fields`).
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WatchedPodStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedPodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_statuses: Option<Vec<WatchedContainer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_container_statuses: Option<Vec<WatchedContainer>>,
    /// Only a `PodScheduled=False` condition is kept (`keep_read_fields`):
    /// the scheduler's reason a pod has no node (`rollout::capacity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<WatchedCondition>>,
}

/// A pod condition, as far as `rollout::capacity` reads it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedCondition {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The scheduler's explanation (cut to `SCHEDULER_MESSAGE_KEPT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// A container's status, reduced to why it waits or how it last ended.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedContainer {
    /// Named in failure messages ("init container model-init").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// An init container that ended in error and was restarted fails
    /// repeatedly (`rollout::container`).
    #[serde(default)]
    pub restart_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<WatchedContainerState>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct WatchedContainerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<Terminated>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Waiting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The kubelet's explanation; kept (cut to `MESSAGE_KEPT`) only for
    /// the reasons whose message is classified (`rollout::container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    #[serde(default)]
    pub exit_code: i32,
}

/// Container statuses kept per list: a pod of ours has the server and the
/// spec's few init containers; the API server does not compare status with
/// spec, so anyone who may write pod status could send thousands.
pub const CONTAINERS_KEPT: usize = 16;
/// Bytes of a container name kept: a real one is a DNS label (63).
const NAME_KEPT: usize = 63;
/// The waiting reasons whose message `rollout::container` classifies.
pub const MESSAGE_READ_FOR: [&str; 2] = ["CreateContainerConfigError", "CreateContainerError"];
/// Bytes of a waiting message kept: enough for the kubelet's message
/// classes, which are recognised by their start.
pub const MESSAGE_KEPT: usize = 256;
/// Bytes of the scheduler's message kept: its per-node reasons for a
/// cluster with a few kinds of nodes ("0/40 nodes are available: 12
/// Insufficient nvidia.com/gpu, 28 node(s) didn't match ...").
pub const SCHEDULER_MESSAGE_KEPT: usize = 1024;

impl WatchedPod {
    /// Why its containers wait, init containers first.
    pub fn waiting_reasons(&self) -> impl Iterator<Item = &str> {
        self.status
            .iter()
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .chain(s.container_statuses.iter())
            })
            .flatten()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
    }

    /// The scheduler could not place the pod: its `PodScheduled=False`
    /// condition with reason `Unschedulable`.
    pub fn unschedulable(&self) -> Option<&WatchedCondition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .find(|c| is_unschedulable(c))
    }

    pub fn init_containers(&self) -> &[WatchedContainer] {
        self.status
            .as_ref()
            .and_then(|s| s.init_container_statuses.as_deref())
            .unwrap_or_default()
    }

    pub fn containers(&self) -> &[WatchedContainer] {
        self.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default()
    }
}

impl WatchedContainer {
    pub fn waiting(&self) -> Option<&Waiting> {
        self.state.as_ref()?.waiting.as_ref()
    }

    pub fn waiting_reason(&self) -> Option<&str> {
        self.waiting()?.reason.as_deref()
    }

    /// The exit code of the run that ended last, when it has ended.
    pub fn exit_code(&self) -> Option<i32> {
        Some(self.state.as_ref()?.terminated.as_ref()?.exit_code)
    }
}

/// Drops the metadata neither health nor the index reads (annotations,
/// managed fields, uid, times, ...) before the pod is cached, and bounds
/// what the container statuses may hold.
pub fn keep_read_fields(pod: &mut WatchedPod) {
    let meta = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        owner_references: meta.owner_references,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    };
    if let Some(status) = pod.status.as_mut() {
        if let Some(conditions) = status.conditions.as_mut() {
            conditions.retain(is_unschedulable);
            conditions.truncate(1);
            for c in conditions.iter_mut() {
                c.reason = Some(UNSCHEDULABLE.to_string());
                if let Some(message) = c.message.as_mut() {
                    cut(message, SCHEDULER_MESSAGE_KEPT);
                }
            }
        }
        if status.conditions.as_ref().is_some_and(Vec::is_empty) {
            status.conditions = None;
        }
        for list in [
            &mut status.init_container_statuses,
            &mut status.container_statuses,
        ]
        .into_iter()
        .flatten()
        {
            list.truncate(CONTAINERS_KEPT);
            list.iter_mut().for_each(bound_container);
        }
    }
}

const UNSCHEDULABLE: &str = "Unschedulable";

fn is_unschedulable(c: &WatchedCondition) -> bool {
    c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some(UNSCHEDULABLE)
}

fn bound_container(c: &mut WatchedContainer) {
    cut(&mut c.name, NAME_KEPT);
    let Some(waiting) = c.state.as_mut().and_then(|s| s.waiting.as_mut()) else {
        return;
    };
    if let Some(reason) = waiting.reason.as_mut() {
        // Kubelet reasons are short CamelCase words.
        cut(reason, NAME_KEPT);
    }
    let read = waiting
        .reason
        .as_deref()
        .is_some_and(|r| MESSAGE_READ_FOR.contains(&r));
    match waiting.message.as_mut() {
        Some(message) if read => cut(message, MESSAGE_KEPT),
        _ => waiting.message = None,
    }
}

impl k8s_openapi::Resource for WatchedPod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for WatchedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    /// A pod as the API server sends it, with spec, managed fields and
    /// every status the kubelet writes.
    fn full_pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "m-abc-x", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"mlops.dev/revision": "2", "pod-template-hash": "abc"},
                "annotations": {"a": "b"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "m-abc", "uid": "r", "controller": true}],
                "deletionTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]
            },
            "spec": {"containers": [{"name": "model-server", "image": "srv:1", "env": [{"name": "MODEL", "value": "m"}]}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}],
                "containerStatuses": [{"name": "model-server", "image": "srv:1", "imageID": "", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]
            }
        })
    }

    #[test]
    fn decodes_what_is_read_from_a_full_pod() {
        let mut watched: WatchedPod = serde_json::from_value(full_pod()).unwrap();
        keep_read_fields(&mut watched);
        let full: Pod = serde_json::from_value(full_pod()).unwrap();
        assert_eq!(watched.metadata.name, full.metadata.name);
        assert_eq!(watched.metadata.namespace, full.metadata.namespace);
        assert_eq!(watched.metadata.labels, full.metadata.labels);
        assert_eq!(
            watched.metadata.owner_references,
            full.metadata.owner_references
        );
        assert_eq!(
            watched.metadata.deletion_timestamp,
            full.metadata.deletion_timestamp
        );
        assert_eq!(
            watched.waiting_reasons().collect::<Vec<_>>(),
            ["CrashLoopBackOff"]
        );
        assert!(watched.metadata.managed_fields.is_none());
        assert!(watched.metadata.annotations.is_none());
        assert_eq!(
            watched.status.as_ref().unwrap().conditions,
            None,
            "only PodScheduled=False is kept"
        );
        assert_eq!(<WatchedPod as kube::Resource>::kind(&()), "Pod");
    }

    #[test]
    fn container_statuses_are_bounded() {
        let container = |i: usize, reason: &str| {
            json!({"name": format!("c{i}-{}", "n".repeat(100)), "restartCount": 2,
                   "state": {"waiting": {"reason": reason, "message": "m".repeat(100_000)}}})
        };
        let many: Vec<_> = (0..1000)
            .map(|i| container(i, "CreateContainerConfigError"))
            .collect();
        let mut pod: WatchedPod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"initContainerStatuses": many, "containerStatuses": [container(0, "CrashLoopBackOff")]},
        }))
        .unwrap();
        keep_read_fields(&mut pod);
        let init = pod.init_containers();
        assert_eq!(init.len(), CONTAINERS_KEPT);
        assert_eq!(init[0].name.len(), NAME_KEPT);
        assert_eq!(init[0].restart_count, 2);
        let kept = init[0].waiting().and_then(|w| w.message.as_deref());
        assert_eq!(kept.map(str::len), Some(MESSAGE_KEPT), "read: cut");
        let server = &pod.containers()[0];
        assert_eq!(server.waiting_reason(), Some("CrashLoopBackOff"));
        assert_eq!(server.waiting().unwrap().message, None, "not read: dropped");
    }

    #[test]
    fn only_the_unschedulable_condition_is_kept_and_bounded() {
        let mut pod: WatchedPod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "m"},
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes are available: ".to_string() + &"x".repeat(100_000), "lastTransitionTime": "2026-12-07T00:00:00Z"},
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "a second one"},
            ]},
        }))
        .unwrap();
        keep_read_fields(&mut pod);
        let conditions = pod.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert_eq!(conditions.len(), 1);
        let kept = pod.unschedulable().unwrap();
        assert_eq!(
            kept.message.as_deref().map(str::len),
            Some(SCHEDULER_MESSAGE_KEPT)
        );
        assert!(kept.last_transition_time.is_some());

        let mut scheduled: WatchedPod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]},
        }))
        .unwrap();
        keep_read_fields(&mut scheduled);
        assert_eq!(scheduled.unschedulable(), None);
        assert_eq!(scheduled.status.unwrap().conditions, None);
    }

    #[test]
    fn a_pod_without_status_decodes() {
        let watched: WatchedPod =
            serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!(watched.waiting_reasons().count(), 0);
    }

    #[test]
    fn is_much_smaller_than_a_pod() {
        // What the cache holds per pod, inline; the point of this type.
        assert!(
            std::mem::size_of::<WatchedPod>() * 4 < std::mem::size_of::<Pod>(),
            "{} vs {}",
            std::mem::size_of::<WatchedPod>(),
            std::mem::size_of::<Pod>()
        );
    }
}
