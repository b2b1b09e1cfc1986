//! `spec.server`: the model server's pod, as a Deployment's pod template
//! carries it, with the operator's own parts protected.
//!
//! The model container's fields and the pod's fields sit side by side, as
//! in KServe's predictor, so a vLLM or Triton Deployment translates field by
//! field: what a container says goes to the model container, what a PodSpec
//! says goes to the pod. The operator owns the model container's name, its
//! `MODEL_*` variables, the `http` port name, the volumes named `mlops-*`
//! and the pod labels the Services select on; a spec that sets one is
//! refused at `kubectl apply`, naming the field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvFromSource, EnvVar, HostAlias, Lifecycle, LocalObjectReference,
    PodDNSConfig, PodResourceClaim, PodSecurityContext, Probe, ResourceRequirements,
    SecurityContext, Toleration, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Name of the model server container in every pod.
pub const MODEL_CONTAINER: &str = "model-server";
/// Name of the model server's main port.
pub const MAIN_PORT: &str = "http";
/// Volume names the operator keeps for itself (`mlops-shm`, `mlops-model`).
pub const RESERVED_VOLUME_PREFIX: &str = "mlops-";

/// The model server: its container and the pod it runs in. Fields not set
/// keep a restricted Pod Security Standard pod (non-root, no privilege
/// escalation, all capabilities dropped, RuntimeDefault seccomp); what is
/// set overrides that default, and the namespace's Pod Security Admission
/// decides what is allowed, as for a Deployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.ports) || self.ports.all(p, p.name != 'http' && p.containerPort != self.port)").message("server.ports may not use the name 'http' or server.port's number: the operator declares that port from server.port"),
    validation = Rule::new("!has(self.ports) || self.ports.all(p, self.ports.exists_one(q, q.containerPort == p.containerPort))").message("server.ports must not repeat a port number"),
    validation = Rule::new("!has(self.volumeMounts) || self.volumeMounts.all(m, self.volumeMounts.exists_one(n, n.mountPath == m.mountPath))").message("server.volumeMounts must not mount two volumes at one path"),
    validation = Rule::new("!has(self.env) || self.env.all(e, self.env.exists_one(f, f.name == e.name))").message("server.env must not set a variable twice"),
    validation = Rule::new("!has(self.initContainers) || self.initContainers.all(c, c.name != 'model-server' && c.name != 'mlops-model-fetch')").message("server.initContainers may not use the names 'model-server' or 'mlops-model-fetch': they are the model container's and the model download's"),
    validation = Rule::new("!has(self.volumes) || self.volumes.all(v, !v.name.startsWith('mlops-'))").message("server.volumes may not use names starting with 'mlops-': the operator keeps them for the shm and model volumes"),
    validation = Rule::new("!has(self.volumeMounts) || self.volumeMounts.all(m, m.name.startsWith('mlops-') || (has(self.volumes) && self.volumes.exists(v, v.name == m.name)))").message("server.volumeMounts must name a volume of server.volumes"),
    validation = Rule::new("!has(self.initContainers) || self.initContainers.all(c, !has(c.volumeMounts) || c.volumeMounts.all(m, m.name.startsWith('mlops-') || (has(self.volumes) && self.volumes.exists(v, v.name == m.name))))").message("server.initContainers[].volumeMounts must name a volume of server.volumes"),
    validation = Rule::new("!has(self.shmSize) || !has(self.volumeMounts) || self.volumeMounts.all(m, m.mountPath != '/dev/shm')").message("server.volumeMounts may not mount /dev/shm while server.shmSize is set: the operator mounts it"),
)]
pub struct ServerSpec {
    /// Container image of the model server, e.g. `vllm/vllm-openai:v0.11.0`.
    #[schemars(length(max = 512))]
    #[x_kube(
        validation = Rule::new("size(self) > 0").message("server.image must not be empty"),
        validation = Rule::new("!self.contains(' ')").message("server.image must not contain spaces")
    )]
    pub image: String,

    /// When the kubelet pulls the image: Always, IfNotPresent or Never. The
    /// Kubernetes default when empty (Always for `:latest`, else IfNotPresent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Entrypoint override; the image's ENTRYPOINT when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,

    /// Arguments to the entrypoint; the image's CMD when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,

    /// The model container's working directory; the image's when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,

    /// Port the server listens on inside the pod, named `http`: the
    /// Service's `service.port` sends traffic to it, and the default
    /// readiness probe checks it.
    #[serde(default = "default_server_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// More ports of the model container (gRPC, metrics), each by name. Every
    /// one is also a port of the model's Services (stable and canary ones
    /// too), with the same number and name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Option<Vec<ServerPort>>,

    /// Extra environment variables (core/v1 EnvVar; secretKeyRef allowed).
    /// MODEL_NAME, MODEL_VERSION, MODEL_URI and MODEL_PATH are set by the
    /// operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(e, !(e.name in ['MODEL_NAME', 'MODEL_VERSION', 'MODEL_URI', 'MODEL_PATH']))").message("server.env may not set MODEL_NAME, MODEL_VERSION, MODEL_URI or MODEL_PATH: the operator sets them from spec.model"))]
    pub env: Option<Vec<EnvVar>>,

    /// Environment variables from whole ConfigMaps or Secrets (core/v1
    /// EnvFromSource). Variables of `env`, MODEL_* included, win over these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub env_from: Option<Vec<EnvFromSource>>,

    /// CPU, memory and accelerator requests and limits (GPUs via
    /// `limits["nvidia.com/gpu"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "bounded_resources_schema")]
    pub resources: Option<ResourceRequirements>,

    /// When a pod may receive traffic. Defaults to a TCP check on the server
    /// port every 5 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,

    /// When the kubelet restarts a stuck server. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,

    /// Holds the readiness and liveness probes back while a large model
    /// loads (e.g. 60 failures × 10 s = 10 minutes). Make
    /// `rollout.progressDeadlineSeconds` longer than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,

    /// Hooks after start and before stop of the model container (e.g. a
    /// preStop sleep so in-flight requests drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,

    /// The model container's security context. Fields set here replace the
    /// restricted default's; fields left out keep it. With `runAsUser: 0`
    /// (here or in podSecurityContext) and no `runAsNonRoot`, the default
    /// `runAsNonRoot: true` is left out, as it could never hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,

    /// Where the model container mounts volumes of `volumes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,

    /// Size of a memory-backed `/dev/shm` for the model container (vLLM and
    /// Triton with tensor parallelism need several GiB). Counts against the
    /// container's memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_schema")]
    pub shm_size: Option<Quantity>,

    /// Volumes of the pod (core/v1 Volume). The in-tree cloud and legacy
    /// sources Kubernetes deprecated are not offered: use `csi` or a PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "volumes_schema")]
    pub volumes: Option<Vec<Volume>>,

    /// Containers of the pod besides the model server (core/v1 Container).
    /// Without `restartPolicy` they run to completion, in order, before the
    /// server starts; with `restartPolicy: Always` they are sidecars
    /// (Kubernetes' native sidecar containers): started before the server,
    /// kept running beside it, stopped after it. A Deployment's extra
    /// `containers` (an exporter, an auth proxy) go here as sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub init_containers: Option<Vec<Container>>,

    /// Service account the pods run as (IRSA, Workload Identity). The
    /// namespace's `default` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,

    /// Mount the service account's API token. Off by default: a model
    /// server rarely talks to the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,

    /// Secrets to pull the images from private registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// The pod's security context. Fields set here replace the restricted
    /// default's (`runAsNonRoot: true`, RuntimeDefault seccomp); fields left
    /// out keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,

    /// Nodes the model pods may run on (e.g. GPU nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Taints the model pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node and pod affinity of the model pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the model pods spread over zones or nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// PriorityClass of the model pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,

    /// RuntimeClass of the model pods (e.g. `nvidia`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub runtime_class_name: Option<String>,

    /// Scheduler of the model pods; the default scheduler when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub scheduler_name: Option<String>,

    /// Dynamic Resource Allocation claims of the pod (GPUs through DRA),
    /// used by the containers' `resources.claims`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub resource_claims: Option<Vec<PodResourceClaim>>,

    /// Seconds a pod has to stop after SIGTERM; 30 when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub termination_grace_period_seconds: Option<i64>,

    /// Use the node's network namespace (multi-node NCCL over RDMA). The
    /// namespace's Pod Security Admission decides whether it is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,

    /// Use the node's IPC namespace. Pod Security Admission decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "hostIPC")]
    pub host_ipc: Option<bool>,

    /// Extra /etc/hosts entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub host_aliases: Option<Vec<HostAlias>>,

    /// DNS policy of the pod: ClusterFirst when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<DnsPolicy>,

    /// DNS settings merged into the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<PodDNSConfig>,
}

/// A named port of the model container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerPort {
    /// Port name (e.g. `grpc`, `metrics`): at most 15 lowercase letters,
    /// digits or '-', with a letter. Services and probes refer to it.
    #[schemars(length(max = 15))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.matches('[a-z]') && !self.contains('--')").message("a port name is at most 15 lowercase letters, digits or '-' (not '--'), with at least one letter"))]
    pub name: String,

    /// Port number in the container.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,

    /// TCP (the default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// A port's protocol.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum Protocol {
    TCP,
    UDP,
    SCTP,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TCP => "TCP",
            Self::UDP => "UDP",
            Self::SCTP => "SCTP",
        }
    }
}

/// When the kubelet pulls an image.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// A pod's DNS policy.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsPolicy {
    ClusterFirst,
    ClusterFirstWithHostNet,
    Default,
    None,
}

impl DnsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterFirst => "ClusterFirst",
            Self::ClusterFirstWithHostNet => "ClusterFirstWithHostNet",
            Self::Default => "Default",
            Self::None => "None",
        }
    }
}

/// The fields of `server` that are Kubernetes types: their inner
/// descriptions are cut to a first sentence in the CRD, which would
/// otherwise pass the 256 KiB a client-side `kubectl apply` can store;
/// `kubectl explain pod.spec` has the rest.
pub const EMBEDDED_KUBERNETES_TYPES: &[&str] = &[
    "affinity",
    "dnsConfig",
    "env",
    "envFrom",
    "hostAliases",
    "imagePullSecrets",
    "initContainers",
    "lifecycle",
    "livenessProbe",
    "podSecurityContext",
    "readinessProbe",
    "resourceClaims",
    "resources",
    "securityContext",
    "startupProbe",
    "tolerations",
    "topologySpreadConstraints",
    "volumeMounts",
    "volumes",
];

fn default_server_port() -> i32 {
    8080
}

/// The volume sources offered: those Kubernetes keeps. The in-tree cloud
/// and legacy plugins (awsElasticBlockStore, azureDisk, cinder, flexVolume,
/// gitRepo, ...) are deprecated or removed upstream in favour of CSI, and
/// each would add to the CRD and to what a tenant can make the operator
/// hold.
pub const VOLUME_SOURCES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "hostPath",
    "image",
    "nfs",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn volumes_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut volume = generator.subschema_for::<Volume>();
    if let Some(properties) = volume
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        properties.retain(|name, _| name == "name" || VOLUME_SOURCES.contains(&name.as_str()));
        // A claim template's metadata is a whole ObjectMeta; the API server
        // only copies its labels and annotations to the claim.
        if let Some(metadata) = properties
            .get_mut("ephemeral")
            .and_then(|e| e.pointer_mut("/properties/volumeClaimTemplate/properties/metadata"))
            .and_then(|m| m.get_mut("properties"))
            .and_then(serde_json::Value::as_object_mut)
        {
            metadata.retain(|name, _| name == "labels" || name == "annotations");
        }
        // A claim made for one pod is provisioned, never bound to an
        // existing volume by selector.
        if let Some(spec) = properties
            .get_mut("ephemeral")
            .and_then(|e| {
                e.pointer_mut("/properties/volumeClaimTemplate/properties/spec/properties")
            })
            .and_then(serde_json::Value::as_object_mut)
        {
            spec.remove("selector");
        }
    }
    serde_json::json!({
        "type": "array",
        "items": volume,
        "maxItems": 8,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    })
    .try_into()
    .unwrap_or_else(|_| generator.subschema_for::<Vec<Volume>>())
}

/// A quantity such as `16Gi`, checked at `kubectl apply`.
pub fn quantity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    serde_json::json!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 64}],
        "x-kubernetes-validations": [{
            "rule": "isQuantity(string(self))",
            "message": "must be a quantity such as 500m, 2Gi or 1",
        }],
    })
    .try_into()
    .unwrap_or_default()
}

/// Core/v1 ResourceRequirements, with every request and limit checked to be a
/// quantity at `kubectl apply` (otherwise the API server only refuses it when
/// the operator applies the Deployment). The maps are bounded so the API
/// server's CEL cost estimate accepts the rule.
fn bounded_resources_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<ResourceRequirements>();
    for field in ["limits", "requests"] {
        if let Some(map) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(field))
            .and_then(|m| m.as_object_mut())
        {
            map.insert("maxProperties".into(), 12.into());
            map.insert(
                "additionalProperties".into(),
                serde_json::to_value(quantity_schema(generator)).unwrap_or_default(),
            );
        }
    }
    schema
}
