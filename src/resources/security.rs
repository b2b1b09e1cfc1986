//! The restricted Pod Security Standard as the default of every container
//! the operator puts in a model pod, with what the user set laid over it.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSecurityContext, SeccompProfile, SecurityContext,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::ServerSpec;

/// Whether the user asked the model container to run as root (uid 0), in
/// its own security context or the pod's: then no default may say
/// `runAsNonRoot: true`, which could never hold.
pub fn runs_as_root(server: &ServerSpec) -> bool {
    let container = server.security_context.as_ref().and_then(|c| c.run_as_user);
    let pod = server
        .pod_security_context
        .as_ref()
        .and_then(|p| p.run_as_user);
    container.or(pod) == Some(0)
}

/// The restricted default with the user's fields laid over it. A field the
/// user set replaces the default's whole (`capabilities` included).
pub fn container_security(user: Option<&SecurityContext>, root: bool) -> SecurityContext {
    let mut default = SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        run_as_non_root: (!root).then_some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    };
    if let Some(user) = user {
        // The API server refuses a privileged container that may not
        // escalate; asking for privileged means the default gives way.
        if user.privileged == Some(true) {
            default.allow_privilege_escalation = None;
        }
        if user.run_as_user == Some(0) {
            default.run_as_non_root = None;
        }
    }
    match user {
        Some(user) => overlay(default, user),
        None => default,
    }
}

pub fn pod_security(server: &ServerSpec, root: bool) -> PodSecurityContext {
    let default = PodSecurityContext {
        run_as_non_root: (!root).then_some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    };
    match &server.pod_security_context {
        Some(user) => overlay(default, user),
        None => default,
    }
}

/// A user's init or sidecar container with the restricted default under
/// its own security context, so a pod with nothing set stays restricted.
pub fn with_restricted_default(mut container: Container, server: &ServerSpec) -> Container {
    let pod_root = server
        .pod_security_context
        .as_ref()
        .and_then(|p| p.run_as_user)
        == Some(0);
    let own_root = container
        .security_context
        .as_ref()
        .and_then(|c| c.run_as_user);
    let root = own_root.map_or(pod_root, |uid| uid == 0);
    container.security_context = Some(container_security(
        container.security_context.as_ref(),
        root,
    ));
    container
}

/// `default` with every field `user` sets replacing its own. Both are
/// plain Kubernetes structs, so their JSON objects overlay key by key.
fn overlay<T: Serialize + DeserializeOwned + Clone>(default: T, user: &T) -> T {
    let (Ok(serde_json::Value::Object(mut base)), Ok(serde_json::Value::Object(over))) =
        (serde_json::to_value(&default), serde_json::to_value(user))
    else {
        return user.clone();
    };
    base.extend(over);
    serde_json::from_value(serde_json::Value::Object(base)).unwrap_or_else(|_| user.clone())
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    }
}
