//! The model pods' template: the user's pod as `spec.server` describes it,
//! with the operator's own parts (the model container's name and
//! `MODEL_*` variables, the labels, the shm and model volumes) added, and a
//! restricted Pod Security Standard default for what the user left out.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, PodSpec, PodTemplateSpec, Probe,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels;
use super::security::{container_security, pod_security, runs_as_root, with_restricted_default};
use super::storage::{ModelVolume, Platform, model_volume};
use crate::api::{MAIN_PORT, MODEL_CONTAINER, ServedVersion, ServerSpec};

/// The operator's memory-backed `/dev/shm` volume.
pub const SHM_VOLUME: &str = "mlops-shm";

pub fn pod_template(
    instance: &str,
    uid: Option<&str>,
    served: &ServedVersion,
    revision: i64,
    platform: &Platform,
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
    let model = model_volume(served, platform);
    let root = runs_as_root(server);
    let mut volumes = server.volumes.clone().unwrap_or_default();
    volumes.extend(shm_volume(server));
    let mut init_containers: Vec<Container> = model.iter().flat_map(|m| m.fetch.clone()).collect();
    init_containers.extend(
        server
            .init_containers
            .iter()
            .flatten()
            .map(|c| with_restricted_default(c.clone(), server)),
    );
    if let Some(m) = &model {
        volumes.push(m.volume.clone());
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: extra.annotations.filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![model_container(served, model.as_ref(), root)],
            init_containers: non_empty(init_containers),
            volumes: non_empty(volumes),
            node_selector: server.node_selector.clone(),
            tolerations: server.tolerations.clone(),
            affinity: server.affinity.clone(),
            topology_spread_constraints: server.topology_spread_constraints.clone(),
            priority_class_name: server.priority_class_name.clone(),
            runtime_class_name: server.runtime_class_name.clone(),
            scheduler_name: server.scheduler_name.clone(),
            resource_claims: server.resource_claims.clone(),
            termination_grace_period_seconds: server.termination_grace_period_seconds,
            service_account_name: server.service_account_name.clone(),
            image_pull_secrets: server.image_pull_secrets.clone(),
            host_network: server.host_network,
            host_ipc: server.host_ipc,
            host_aliases: server.host_aliases.clone(),
            dns_policy: server.dns_policy.map(|p| p.as_str().to_string()),
            dns_config: server.dns_config.clone(),
            security_context: Some(pod_security(server, root)),
            // A model server rarely talks to the Kubernetes API.
            automount_service_account_token: Some(
                server.automount_service_account_token.unwrap_or(false),
            ),
            // Service links put one env var per Service in the namespace into
            // every pod; a model server needs none of them.
            enable_service_links: Some(false),
            ..PodSpec::default()
        }),
    }
}

fn model_container(served: &ServedVersion, model: Option<&ModelVolume>, root: bool) -> Container {
    let server = &served.server;
    let mut ports = vec![ContainerPort {
        name: Some(MAIN_PORT.to_string()),
        container_port: server.port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }];
    ports.extend(server.ports.iter().flatten().map(|p| ContainerPort {
        name: Some(p.name.clone()),
        container_port: p.container_port,
        protocol: Some(p.protocol.map_or("TCP", |p| p.as_str()).to_string()),
        ..ContainerPort::default()
    }));
    let mut mounts = server.volume_mounts.clone().unwrap_or_default();
    if server.shm_size.is_some() {
        mounts.push(VolumeMount {
            name: SHM_VOLUME.to_string(),
            mount_path: "/dev/shm".to_string(),
            ..VolumeMount::default()
        });
    }
    mounts.extend(model.map(|m| m.mount.clone()));
    Container {
        name: MODEL_CONTAINER.to_string(),
        image: Some(server.image.clone()),
        image_pull_policy: server.image_pull_policy.map(|p| p.as_str().to_string()),
        command: server.command.clone(),
        args: server.args.clone(),
        working_dir: server.working_dir.clone(),
        ports: Some(ports),
        env: Some(env(served, model)),
        env_from: server.env_from.clone(),
        resources: server.resources.clone(),
        readiness_probe: Some(
            server
                .readiness_probe
                .clone()
                .unwrap_or_else(default_readiness_probe),
        ),
        liveness_probe: server.liveness_probe.clone(),
        startup_probe: server.startup_probe.clone(),
        lifecycle: server.lifecycle.clone(),
        volume_mounts: non_empty(mounts),
        security_context: Some(container_security(server.security_context.as_ref(), root)),
        ..Container::default()
    }
}

/// MODEL_* first, then the user's variables (the CRD refuses user MODEL_*).
fn env(served: &ServedVersion, model: Option<&ModelVolume>) -> Vec<EnvVar> {
    let spec = &served.model;
    let mut env = vec![
        plain_env("MODEL_NAME", served.model_name()),
        plain_env("MODEL_VERSION", &spec.version),
    ];
    if let Some(uri) = &spec.uri {
        env.push(plain_env("MODEL_URI", uri));
    }
    if let Some(m) = model {
        env.push(plain_env("MODEL_PATH", &m.path));
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

fn shm_volume(server: &ServerSpec) -> Option<Volume> {
    let size = server.shm_size.clone()?;
    Some(Volume {
        name: SHM_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_string()),
            size_limit: Some(size),
        }),
        ..Volume::default()
    })
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// Model servers speak many protocols (HTTP, gRPC, KServe v2); a TCP check on
/// the server port is the default that holds for all of them.
fn default_readiness_probe() -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(MAIN_PORT.to_string()),
            host: None,
        }),
        period_seconds: Some(5),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}
