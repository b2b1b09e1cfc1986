//! Every label and annotation key the operator reads or writes, and the
//! labels it puts on its children and pods.

use std::collections::BTreeMap;

/// Name of this operator, as the `managed-by` label value and field manager.
pub const MANAGER: &str = "model-operator";

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const VERSION: &str = "app.kubernetes.io/version";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Revision number of the served version, on pods.
pub const REVISION: &str = "mlops.dev/revision";
/// The ModelDeployment's uid, on its pods: the Service selects it, so a pod
/// someone created by hand from a copy of the model's labels gets no
/// traffic. (Not a secret: whoever may read the ModelDeployment may read
/// its uid; health is judged through ownership, see `rollout::health`.)
pub const OWNER_UID: &str = "mlops.dev/owner-uid";

/// Reserved: older operators put it on canary pods (`canary`) and, with a
/// Gateway API route, on stable pods (`stable`). Pods no longer carry a
/// role (a promotion hands the canary's pods to the stable Deployment as
/// they are); users may still not set it.
pub const TRACK: &str = "mlops.dev/track";
/// `kubectl model promote` sets it to `<revision>/<step>` or
/// `<revision>/full`: the canary's current step (or every step) is done.
pub const PROMOTE_ANNOTATION: &str = "mlops.dev/promote";
/// `kubectl model abort` sets it to the canary's revision: roll it back.
pub const ABORT_ANNOTATION: &str = "mlops.dev/abort";

/// Setting this annotation on a ModelDeployment to a new value retries a
/// failed revision (`kubectl model retry` does it).
pub const RETRY_ANNOTATION: &str = "mlops.dev/retry";
/// On a user's HTTPRoute: the name of the ModelDeployment whose canary may
/// set its weights. Without it the route is never written (issue 24).
pub const ROUTE_OPT_IN: &str = "mlops.dev/model-deployment";
/// On children: the hash of the object as the operator last applied it.
pub const APPLIED_HASH: &str = "mlops.dev/applied-hash";
/// On ControllerRevisions: the hash of the revision's served version, its
/// identity (the same served version is always the same revision).
pub const SERVED_HASH: &str = "mlops.dev/served-hash";

const COMPONENT_VALUE: &str = "model-server";

/// Selects every pod of one ModelDeployment, whatever its version, so the
/// Service keeps serving through a rolling update. Immutable on a Deployment,
/// so it holds nothing that a spec change could alter.
pub fn selector(instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE.to_string(), instance.to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// What the Service selects: the Deployment's selector and, when known,
/// the ModelDeployment's uid (`OWNER_UID`).
pub fn service_selector(instance: &str, uid: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = selector(instance);
    if let Some(uid) = uid {
        labels.insert(OWNER_UID.to_string(), uid.to_string());
    }
    labels
}

/// Labels on every child object.
pub fn common(instance: &str, model_name: &str) -> BTreeMap<String, String> {
    let mut labels = selector(instance);
    labels.insert(NAME.to_string(), model_name.to_string());
    labels.insert(COMPONENT.to_string(), COMPONENT_VALUE.to_string());
    labels
}

/// `key=value,…` form of a label map, for selectors in status and watches.
pub fn to_selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The selector every watch of the operator's children uses.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}
