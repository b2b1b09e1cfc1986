//! Is a revision's pods' health already a verdict? Crash loops, image pull
//! failures, containers that cannot be configured and failing init
//! containers (`container`) are failures as soon as one pod shows them:
//! waiting for the progress deadline would keep a broken version half rolled
//! out for minutes.

use super::container::pod_failure;
use super::pod::WatchedPod;
use crate::gates::Failure;
use crate::resources::labels;

/// A container of the pod shows a state that fails a rollout: the only
/// pod change a rollout decision waits for (progress comes from the
/// Deployment's status).
pub fn is_failing(pod: &WatchedPod) -> bool {
    pod_failure(pod).is_some()
}

/// The pod belongs to one of the Deployment's ReplicaSets: its controller
/// owner reference names a ReplicaSet `<deployment>-<pod-template-hash>`
/// with the pod's own hash, or `<deployment>-canary-<pod-template-hash>`:
/// a promoted canary's ReplicaSet, which the stable Deployment adopted with
/// its name (`rollout::promotion`). A pod created by hand with the model's
/// labels has no such reference; one that claims it with a made-up uid is
/// deleted by the garbage collector. Only these pods are judged.
pub fn owned_by_deployment(pod: &WatchedPod, deployment: &str) -> bool {
    let Some(hash) = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
    else {
        return false;
    };
    let (own, adopted) = (
        format!("{deployment}-{hash}"),
        format!("{deployment}-canary-{hash}"),
    );
    pod.metadata.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.kind == "ReplicaSet"
            && r.api_version == "apps/v1"
            && (r.name == own || r.name == adopted)
    })
}

/// Judges the live (not terminating) pods of `revision` among `pods`.
pub fn failure_of<'a>(
    pods: impl IntoIterator<Item = &'a WatchedPod>,
    revision: i64,
) -> Option<Failure> {
    let revision = revision.to_string();
    let of_revision: Vec<&WatchedPod> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::REVISION))
                == Some(&revision)
        })
        .collect();
    let failing: Vec<_> = of_revision.iter().filter_map(|p| pod_failure(p)).collect();
    let first = failing.first()?;
    Some(Failure {
        reason: first.reason,
        message: format!(
            "{}/{} new pods in {}",
            failing.len(),
            of_revision.len(),
            first.detail
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(revision: &str, waiting: Option<&str>, terminating: bool) -> WatchedPod {
        let mut p = json!({"metadata": {"name": "p", "labels": {"mlops.dev/revision": revision}}, "status": {"phase": "Running"}});
        if let Some(reason) = waiting {
            p["status"]["containerStatuses"] = json!([{"name": "model-server", "image": "i", "imageID": "", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": reason}}}]);
        }
        if terminating {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn trimmed_pods_are_judged_alike() {
        let pods = vec![
            pod("2", Some("CrashLoopBackOff"), false),
            pod("2", None, false),
            pod("2", Some("ImagePullBackOff"), true),
            pod("1", Some("ErrImagePull"), false),
        ];
        let mut trimmed = pods.clone();
        trimmed
            .iter_mut()
            .for_each(crate::rollout::pod::keep_read_fields);
        for revision in [1, 2, 3] {
            assert_eq!(
                failure_of(&trimmed, revision),
                failure_of(&pods, revision),
                "revision {revision}"
            );
        }
        assert_eq!(trimmed[0].metadata.labels, pods[0].metadata.labels);
    }

    #[test]
    fn table() {
        // (name, pods, expected (reason, message))
        type Case = (
            &'static str,
            Vec<WatchedPod>,
            Option<(&'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "all healthy",
                vec![pod("2", None, false), pod("2", None, false)],
                None,
            ),
            (
                "crash loop",
                vec![
                    pod("2", Some("CrashLoopBackOff"), false),
                    pod("2", Some("CrashLoopBackOff"), false),
                ],
                Some(("CrashLoopBackOff", "2/2 new pods in CrashLoopBackOff")),
            ),
            (
                "one of two pulls fail",
                vec![
                    pod("2", Some("ImagePullBackOff"), false),
                    pod("2", None, false),
                ],
                Some(("ImagePullFailed", "1/2 new pods in ImagePullBackOff")),
            ),
            (
                "err image pull",
                vec![pod("2", Some("ErrImagePull"), false)],
                Some(("ImagePullFailed", "1/1 new pods in ErrImagePull")),
            ),
            (
                "config error",
                vec![pod("2", Some("CreateContainerConfigError"), false)],
                Some((
                    "ContainerConfigError",
                    "1/1 new pods in CreateContainerConfigError: the kubelet cannot build the container's configuration (container model-server)",
                )),
            ),
            (
                "starting up is not failing",
                vec![pod("2", Some("ContainerCreating"), false)],
                None,
            ),
            (
                "other revisions do not count",
                vec![
                    pod("1", Some("CrashLoopBackOff"), false),
                    pod("2", None, false),
                ],
                None,
            ),
            (
                "terminating pods do not count",
                vec![
                    pod("2", Some("CrashLoopBackOff"), true),
                    pod("2", None, false),
                ],
                None,
            ),
            ("no pods yet", vec![], None),
        ];
        for (name, pods, want) in cases {
            let got = failure_of(&pods, 2);
            assert_eq!(
                got.as_ref().map(|f| (f.reason, f.message.as_str())),
                want,
                "{name}"
            );
        }
    }
}

#[cfg(test)]
mod ownership_tests {
    use super::*;

    fn pod(hash: Option<&str>, owner: Option<(&str, &str, Option<bool>)>) -> WatchedPod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "p",
                "labels": hash.map(|h| serde_json::json!({"pod-template-hash": h})),
                "ownerReferences": owner.map(|(kind, name, controller)| serde_json::json!([
                    {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": controller}
                ])),
            },
        }))
        .unwrap()
    }

    #[test]
    fn only_pods_of_the_deployments_replicasets_count() {
        let cases = [
            (
                "ours",
                pod(Some("abc"), Some(("ReplicaSet", "m-abc", Some(true)))),
                true,
            ),
            ("made by hand", pod(Some("abc"), None), false),
            (
                "no hash",
                pod(None, Some(("ReplicaSet", "m-abc", Some(true)))),
                false,
            ),
            (
                "another ReplicaSet",
                pod(Some("abc"), Some(("ReplicaSet", "other-abc", Some(true)))),
                false,
            ),
            (
                "hash of another",
                pod(Some("xyz"), Some(("ReplicaSet", "m-abc", Some(true)))),
                false,
            ),
            (
                "not the controller",
                pod(Some("abc"), Some(("ReplicaSet", "m-abc", None))),
                false,
            ),
            (
                "a StatefulSet's",
                pod(Some("abc"), Some(("StatefulSet", "m-abc", Some(true)))),
                false,
            ),
        ];
        for (what, pod, ours) in cases {
            assert_eq!(owned_by_deployment(&pod, "m"), ours, "{what}");
        }
    }
}
