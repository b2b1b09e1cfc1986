//! What one pod's container statuses say about its revision. A crash loop,
//! an image that cannot be pulled, a container the kubelet cannot configure
//! or create, or an init container that keeps failing: each means the
//! revision cannot run, as soon as one pod shows it.

use super::foreign;
use super::pod::{WatchedContainer, WatchedPod};
use crate::reasons;

/// Why one pod cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFailure {
    /// One of `reasons`.
    pub reason: &'static str,
    /// What the revision's message says after "N/M new pods in ", e.g.
    /// "CrashLoopBackOff" or "Init:CrashLoopBackOff (init container fetch)".
    pub detail: String,
}

/// Container waiting reasons that mean the container cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    CrashLoop,
    ImagePull,
    /// The kubelet cannot build the container's configuration, or the
    /// runtime cannot create the container from it.
    Config,
    /// The runtime cannot start it.
    Run,
}

fn kind(waiting_reason: &str) -> Option<Kind> {
    match waiting_reason {
        "CrashLoopBackOff" => Some(Kind::CrashLoop),
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            Some(Kind::ImagePull)
        }
        "CreateContainerConfigError" | "CreateContainerError" => Some(Kind::Config),
        "RunContainerError" => Some(Kind::Run),
        _ => None,
    }
}

/// The first reason the pod cannot run: its init containers first (while
/// one fails, the others wait in PodInitializing).
pub fn pod_failure(pod: &WatchedPod) -> Option<PodFailure> {
    pod.init_containers()
        .iter()
        .find_map(init_failure)
        .or_else(|| pod.containers().iter().find_map(failure))
}

fn failure(c: &WatchedContainer) -> Option<PodFailure> {
    let waiting = c.waiting_reason()?;
    let kind = kind(waiting)?;
    let reason = match kind {
        Kind::CrashLoop => reasons::CRASH_LOOP,
        Kind::ImagePull => reasons::IMAGE_PULL_FAILED,
        Kind::Config => reasons::CONTAINER_CONFIG_ERROR,
        Kind::Run => reasons::CONTAINER_FAILED,
    };
    let detail = match kind {
        Kind::Config => format!(
            "{waiting}: {} (container {})",
            config_class(waiting, message(c)),
            foreign::name(&c.name)
        ),
        _ => waiting.to_string(),
    };
    Some(PodFailure { reason, detail })
}

/// An init container fails the revision like a server container would,
/// and also when it has ended in error again after a restart: under the
/// pod's restartPolicy Always the kubelet runs it until it succeeds, so
/// between back-offs it shows as terminated (kubectl: Init:Error).
fn init_failure(c: &WatchedContainer) -> Option<PodFailure> {
    let name = foreign::name(&c.name);
    let detail = if let Some(waiting) = c.waiting_reason().filter(|w| kind(w).is_some()) {
        let class = match kind(waiting) {
            Some(Kind::Config) => format!(": {}", config_class(waiting, message(c))),
            _ => String::new(),
        };
        format!("Init:{waiting}{class} (init container {name})")
    } else {
        let code = c.exit_code().filter(|code| *code != 0)?;
        if c.restart_count < 1 {
            return None;
        }
        format!(
            "Init:Error (init container {name} exited with code {code}, {} restarts)",
            c.restart_count
        )
    };
    Some(PodFailure {
        reason: reasons::INIT_CONTAINER_FAILED,
        detail,
    })
}

fn message(c: &WatchedContainer) -> &str {
    c.waiting()
        .and_then(|w| w.message.as_deref())
        .unwrap_or_default()
}

/// The kubelet's (or the runtime's) message reduced to its class, in the
/// operator's words: the message names Secrets, keys, users and pods the
/// operator does not repeat.
fn config_class(waiting_reason: &str, message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    let has = |s: &str| m.contains(s);
    if has("non-numeric user") {
        "the image's user is not numeric and runAsNonRoot is set"
    } else if has("breaks non-root policy") || has("runasnonroot and image will run as root") {
        "the container would run as root and runAsNonRoot is set"
    } else if has("couldn't find key") {
        "a Secret or ConfigMap key the pod needs is missing"
    } else if (has("secret") || has("configmap")) && has("not found") {
        "a Secret or ConfigMap the pod needs is missing"
    } else if has("subpath") {
        "a volume mount's subPath cannot be prepared"
    } else if has("no such file or directory") {
        "a file or directory the container needs does not exist"
    } else if waiting_reason == "CreateContainerError" {
        "the container runtime cannot create the container"
    } else {
        "the kubelet cannot build the container's configuration"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn waiting(name: &str, reason: &str, message: &str) -> Value {
        json!({"name": name, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}})
    }

    fn pod(init: Vec<Value>, containers: Vec<Value>) -> WatchedPod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"initContainerStatuses": init, "containerStatuses": containers},
        }))
        .unwrap()
    }

    /// (reason, detail); `None`: the pod can run.
    type Expected = Option<(&'static str, &'static str)>;

    #[test]
    fn the_cache_keeps_the_messages_that_are_read() {
        for reason in crate::rollout::pod::MESSAGE_READ_FOR {
            assert_eq!(kind(reason), Some(Kind::Config), "{reason}");
        }
        for reason in ["CreateContainerConfigError", "CreateContainerError"] {
            assert!(crate::rollout::pod::MESSAGE_READ_FOR.contains(&reason));
        }
    }

    #[test]
    fn table() {
        let server = |reason: &str, message: &str| {
            pod(vec![], vec![waiting("model-server", reason, message)])
        };
        let init = |c: Value| {
            pod(
                vec![c],
                vec![waiting("model-server", "PodInitializing", "")],
            )
        };
        let terminated = |code: i32, restarts: i32| json!({"name": "fetch", "restartCount": restarts, "state": {"terminated": {"exitCode": code}}});
        // (what, pod, expected (reason, detail))
        let cases: Vec<(&str, WatchedPod, Expected)> = vec![
            (
                "running",
                pod(vec![], vec![json!({"name": "s", "state": {"running": {}}})]),
                None,
            ),
            ("no status", pod(vec![], vec![]), None),
            ("starting", server("ContainerCreating", ""), None),
            (
                "crash loop",
                server("CrashLoopBackOff", "back-off 40s"),
                Some(("CrashLoopBackOff", "CrashLoopBackOff")),
            ),
            (
                "pull",
                server("ImagePullBackOff", "x"),
                Some(("ImagePullFailed", "ImagePullBackOff")),
            ),
            (
                "invalid image",
                server("InvalidImageName", "x"),
                Some(("ImagePullFailed", "InvalidImageName")),
            ),
            (
                "cannot start",
                server("RunContainerError", "x"),
                Some(("ContainerFailed", "RunContainerError")),
            ),
            (
                "non-numeric user",
                server(
                    "CreateContainerConfigError",
                    "container has runAsNonRoot and image has non-numeric user (appuser), cannot verify user is non-root (pod: \"m-1_ns(u)\", container: model-server)",
                ),
                Some((
                    "ContainerConfigError",
                    "CreateContainerConfigError: the image's user is not numeric and runAsNonRoot is set (container model-server)",
                )),
            ),
            (
                "root user",
                server(
                    "CreateContainerConfigError",
                    "container's runAsUser breaks non-root policy (pod: \"m\", container: model-server)",
                ),
                Some((
                    "ContainerConfigError",
                    "CreateContainerConfigError: the container would run as root and runAsNonRoot is set (container model-server)",
                )),
            ),
            (
                "image runs as root",
                server(
                    "CreateContainerConfigError",
                    "container has runAsNonRoot and image will run as root (pod: \"m\", container: model-server)",
                ),
                Some((
                    "ContainerConfigError",
                    "CreateContainerConfigError: the container would run as root and runAsNonRoot is set (container model-server)",
                )),
            ),
            (
                "missing key",
                server(
                    "CreateContainerConfigError",
                    "couldn't find key token in Secret team-a/model-credentials",
                ),
                Some((
                    "ContainerConfigError",
                    "CreateContainerConfigError: a Secret or ConfigMap key the pod needs is missing (container model-server)",
                )),
            ),
            (
                "missing config map",
                server(
                    "CreateContainerConfigError",
                    "configmap \"settings\" not found",
                ),
                Some((
                    "ContainerConfigError",
                    "CreateContainerConfigError: a Secret or ConfigMap the pod needs is missing (container model-server)",
                )),
            ),
            (
                "unknown config error, no message",
                server("CreateContainerConfigError", ""),
                Some((
                    "ContainerConfigError",
                    "CreateContainerConfigError: the kubelet cannot build the container's configuration (container model-server)",
                )),
            ),
            (
                "create error",
                server(
                    "CreateContainerError",
                    "failed to generate container \"abc\" spec: failed to stat \"/models\": no such file or directory",
                ),
                Some((
                    "ContainerConfigError",
                    "CreateContainerError: a file or directory the container needs does not exist (container model-server)",
                )),
            ),
            (
                "create error, other",
                server("CreateContainerError", "context deadline exceeded"),
                Some((
                    "ContainerConfigError",
                    "CreateContainerError: the container runtime cannot create the container (container model-server)",
                )),
            ),
            (
                "init crash loop",
                init(waiting("fetch", "CrashLoopBackOff", "back-off 10s")),
                Some((
                    "InitContainerFailed",
                    "Init:CrashLoopBackOff (init container fetch)",
                )),
            ),
            (
                "init image pull",
                init(waiting("fetch", "ErrImagePull", "x")),
                Some((
                    "InitContainerFailed",
                    "Init:ErrImagePull (init container fetch)",
                )),
            ),
            (
                "init config error",
                init(waiting(
                    "fetch",
                    "CreateContainerConfigError",
                    "couldn't find key k in ConfigMap ns/c",
                )),
                Some((
                    "InitContainerFailed",
                    "Init:CreateContainerConfigError: a Secret or ConfigMap key the pod needs is missing (init container fetch)",
                )),
            ),
            (
                "init failed again",
                init(terminated(1, 2)),
                Some((
                    "InitContainerFailed",
                    "Init:Error (init container fetch exited with code 1, 2 restarts)",
                )),
            ),
            (
                "init failed once: the kubelet tries again",
                init(terminated(1, 0)),
                None,
            ),
            ("init succeeded after a retry", init(terminated(0, 1)), None),
            (
                "init running",
                init(json!({"name": "fetch", "restartCount": 1, "state": {"running": {}}})),
                None,
            ),
            (
                "init first",
                pod(
                    vec![waiting("fetch", "CrashLoopBackOff", "")],
                    vec![waiting("s", "CrashLoopBackOff", "")],
                ),
                Some((
                    "InitContainerFailed",
                    "Init:CrashLoopBackOff (init container fetch)",
                )),
            ),
            (
                "a name is reduced",
                init(waiting("fe\"tch <b>", "CrashLoopBackOff", "")),
                Some((
                    "InitContainerFailed",
                    "Init:CrashLoopBackOff (init container fetchb)",
                )),
            ),
        ];
        for (what, pod, want) in cases {
            let got = pod_failure(&pod);
            assert_eq!(
                got.as_ref().map(|f| (f.reason, f.detail.as_str())),
                want,
                "{what}"
            );
        }
    }
}
