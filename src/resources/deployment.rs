use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, SecurityContext, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{child_meta, labels};
use crate::api::{ModelDeployment, ServedVersion};

/// Name of the model server container in every pod.
pub const CONTAINER_NAME: &str = "model-server";
/// Name of the server port, targeted by the Service and the default probe.
pub const PORT_NAME: &str = "http";

/// The Deployment running `served` as revision `revision`. While autoscaling
/// is set, `replicas` is left out so the operator never fights the
/// HorizontalPodAutoscaler.
pub fn deployment(md: &ModelDeployment, served: &ServedVersion, revision: i64) -> Deployment {
    let spec = &md.spec;
    Deployment {
        metadata: child_meta(md, served.model_name()),
        spec: Some(DeploymentSpec {
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels::selector(&md.name_any())),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(spec.rollout.max_surge.clone()),
                    max_unavailable: Some(spec.rollout.max_unavailable.clone()),
                }),
            }),
            progress_deadline_seconds: Some(spec.rollout.progress_deadline_seconds),
            revision_history_limit: Some(spec.revision_history_limit),
            template: stable_track(
                md,
                pod_template(&md.name_any(), md.metadata.uid.as_deref(), served, revision),
            ),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// With a Gateway API route, the stable pods carry `mlops.dev/track:
/// stable` for the `<name>-stable` Service (a Service cannot select "not
/// canary"). Only then: the label is in the pod template, and adding it to
/// every model would restart every model's pods.
fn stable_track(md: &ModelDeployment, mut template: PodTemplateSpec) -> PodTemplateSpec {
    if super::route::gateway_route(md).is_some()
        && let Some(meta) = template.metadata.as_mut()
    {
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(labels::TRACK.to_string(), labels::TRACK_STABLE.to_string());
    }
    template
}

/// Name of the canary Deployment of ModelDeployment `name`.
pub fn canary_name(name: &str) -> String {
    format!("{name}-canary")
}

/// The canary Deployment: `served` as revision `revision` with exactly
/// `replicas` pods (the step's share of the stable count; never the HPA's).
/// Its pods carry `mlops.dev/track: canary`, which its selector adds to the
/// stable one's, so the two Deployments never count each other's pods.
pub fn canary_deployment(
    md: &ModelDeployment,
    served: &ServedVersion,
    revision: i64,
    replicas: i32,
) -> Deployment {
    let mut d = deployment(md, served, revision);
    let name = canary_name(&md.name_any());
    d.metadata.name = Some(name);
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = Some(replicas);
        spec.selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(labels::TRACK.to_string(), labels::TRACK_CANARY.to_string());
        if let Some(meta) = spec.template.metadata.as_mut() {
            meta.labels
                .get_or_insert_with(Default::default)
                .insert(labels::TRACK.to_string(), labels::TRACK_CANARY.to_string());
        }
    }
    d
}

/// The revision a Deployment's pod template runs, from its label.
pub fn revision_of(deployment: &Deployment) -> Option<i64> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .labels
        .as_ref()?
        .get(labels::REVISION)?
        .parse()
        .ok()
}

fn pod_template(
    instance: &str,
    uid: Option<&str>,
    served: &ServedVersion,
    revision: i64,
) -> PodTemplateSpec {
    let extra = served.pod_metadata.clone().unwrap_or_default();
    // The user's labels go first so the operator's own always win; the CRD
    // already refuses overrides, this keeps the builder safe on its own.
    let mut pod_labels = extra.labels.unwrap_or_default();
    pod_labels.extend(labels::common(instance, served.model_name()));
    pod_labels.insert(labels::VERSION.to_string(), served.model.version.clone());
    pod_labels.insert(labels::REVISION.to_string(), revision.to_string());
    if let Some(uid) = uid {
        pod_labels.insert(labels::OWNER_UID.to_string(), uid.to_string());
    }

    let server = &served.server;
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: extra.annotations.filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: CONTAINER_NAME.to_string(),
                image: Some(server.image.clone()),
                command: server.command.clone(),
                args: server.args.clone(),
                ports: Some(vec![ContainerPort {
                    name: Some(PORT_NAME.to_string()),
                    container_port: server.port,
                    protocol: Some("TCP".to_string()),
                    ..ContainerPort::default()
                }]),
                env: Some(env(served)),
                resources: server.resources.clone(),
                readiness_probe: Some(
                    server
                        .readiness_probe
                        .clone()
                        .unwrap_or_else(default_readiness_probe),
                ),
                liveness_probe: server.liveness_probe.clone(),
                security_context: Some(restricted_container_security()),
                ..Container::default()
            }],
            node_selector: server.node_selector.clone(),
            tolerations: server.tolerations.clone(),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(runtime_default_seccomp()),
                ..PodSecurityContext::default()
            }),
            // A model server has no business talking to the Kubernetes API.
            automount_service_account_token: Some(false),
            // Service links put one env var per Service in the namespace into
            // every pod; a model server needs none of them.
            enable_service_links: Some(false),
            ..PodSpec::default()
        }),
    }
}

/// MODEL_* first, then the user's variables (the CRD refuses user MODEL_*).
fn env(served: &ServedVersion) -> Vec<EnvVar> {
    let model = &served.model;
    let mut env = vec![
        plain_env("MODEL_NAME", served.model_name()),
        plain_env("MODEL_VERSION", &model.version),
    ];
    if let Some(uri) = &model.uri {
        env.push(plain_env("MODEL_URI", uri));
    }
    env.extend(served.server.env.iter().flatten().cloned());
    env
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// Model servers speak many protocols (HTTP, gRPC, KServe v2); a TCP check on
/// the server port is the default that holds for all of them.
fn default_readiness_probe() -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(PORT_NAME.to_string()),
            host: None,
        }),
        period_seconds: Some(5),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// What the restricted Pod Security Standard asks of every container.
fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    }
}
