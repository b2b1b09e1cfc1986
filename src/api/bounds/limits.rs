//! The limits of the fields that carry text, by path under `spec`; every
//! other node gets `super::DEFAULTS`.

/// A limit on one node, named by its path under `spec`: `a.b` a field,
/// `a.b[]` the items of list `a.b`, `a.b{}` the values of map `a.b`; `*`
/// stands for any characters, so one entry bounds a Kubernetes type
/// wherever it is embedded. A length, item or entry limit applies to a node
/// of its kind only.
pub struct Limit {
    pub path: &'static str,
    pub bound: Bound,
}

pub enum Bound {
    /// The most characters of a string.
    Length(u64),
    /// The most items of a list.
    Items(u64),
    /// The most entries of a map.
    Entries(u64),
    /// The most bytes of all the strings of a list or map together: their
    /// items' strings, or the member `of` each item (a CEL rule). `what`
    /// ends the message, after "at most N bytes in all".
    Total {
        bytes: u64,
        of: Option<&'static str>,
        what: &'static str,
    },
    /// Lists and maps in the subtree that no other bound names get at most
    /// `items` items and `entries` entries, instead of `super::DEFAULTS`:
    /// the Kubernetes types embedded in a spec nest lists in lists, and the
    /// general defaults multiplied through them would allow megabytes.
    Nested { items: u64, entries: u64 },
    /// Fields of an object of which at most one group may be set, as the
    /// API server requires of a Pod (one probe handler, one env source): a
    /// CEL rule refuses more at `kubectl apply`, and the worst case counts
    /// the largest group only.
    OneOf {
        groups: &'static [&'static [&'static str]],
        what: &'static str,
    },
}

const PROBE_HANDLERS: &[&[&str]] = &[&["exec"], &["grpc"], &["httpGet"], &["tcpSocket"]];
const HOOK_HANDLERS: &[&[&str]] = &[&["exec"], &["httpGet"], &["sleep"], &["tcpSocket"]];
const ENV_SOURCES: &[&[&str]] = &[
    &["configMapKeyRef"],
    &["fieldRef"],
    &["fileKeyRef"],
    &["resourceFieldRef"],
    &["secretKeyRef"],
];
const PROJECTED_SOURCES: &[&[&str]] = &[
    &["clusterTrustBundle"],
    &["configMap"],
    &["downwardAPI"],
    &["podCertificate"],
    &["secret"],
    &["serviceAccountToken"],
];
const VOLUME_SOURCES: &[&[&str]] = &[
    &["configMap"],
    &["csi"],
    &["downwardAPI"],
    &["emptyDir"],
    &["ephemeral"],
    &["hostPath"],
    &["image"],
    &["nfs"],
    &["persistentVolumeClaim"],
    &["projected"],
    &["secret"],
];

const METRIC_SOURCES: &[&[&str]] = &[
    &["resource"],
    &["containerResource"],
    &["pods"],
    &["object"],
    &["external"],
];

const fn limit(path: &'static str, bound: Bound) -> Limit {
    Limit { path, bound }
}

const fn total(bytes: u64) -> Bound {
    Bound::Total {
        bytes,
        of: None,
        what: "",
    }
}

/// The fields that carry text, sized for what real model servers are given
/// (vLLM, Triton, MLServer and TorchServe flags, JSON configs in env); the
/// Kubernetes types embedded in `server` (selectors, volumes, sidecar
/// containers) with bounds a real pod stays far below. The general entries
/// (with `*`) come first, so an exact path after them can say otherwise.
pub const LIMITS: &[Limit] = &[
    limit(
        "server.*",
        Bound::Nested {
            items: 8,
            entries: 8,
        },
    ),
    // Anywhere: probes, hooks, env sources and selectors.
    limit(
        "*Probe",
        Bound::OneOf {
            groups: PROBE_HANDLERS,
            what: "takes one handler: exec, grpc, httpGet or tcpSocket",
        },
    ),
    limit("*Probe.exec.command[]", Bound::Length(4096)),
    limit("*Probe.exec.command", total(8 * 1024)),
    limit("*Probe.httpGet.path", Bound::Length(2048)),
    limit("*Probe.httpGet.httpHeaders", Bound::Items(8)),
    limit("*Probe.httpGet.httpHeaders[].value", Bound::Length(1024)),
    limit(
        "*.lifecycle.postStart",
        Bound::OneOf {
            groups: HOOK_HANDLERS,
            what: "takes one handler: exec, httpGet, sleep or tcpSocket",
        },
    ),
    limit(
        "*.lifecycle.preStop",
        Bound::OneOf {
            groups: HOOK_HANDLERS,
            what: "takes one handler: exec, httpGet, sleep or tcpSocket",
        },
    ),
    limit("*.lifecycle.*.exec.command[]", Bound::Length(4096)),
    limit("*.lifecycle.*.exec.command", total(4 * 1024)),
    limit("*.lifecycle.*.httpGet.httpHeaders", Bound::Items(8)),
    limit(
        "*.lifecycle.*.httpGet.httpHeaders[].value",
        Bound::Length(1024),
    ),
    limit(
        "*.env[].valueFrom",
        Bound::OneOf {
            groups: ENV_SOURCES,
            what: "takes one source: configMapKeyRef, fieldRef, fileKeyRef, resourceFieldRef or secretKeyRef",
        },
    ),
    limit("*.env[].name", Bound::Length(128)),
    limit("*.matchExpressions", Bound::Items(4)),
    limit("*.matchExpressions[].values", Bound::Items(8)),
    limit("*.matchExpressions[].values[]", Bound::Length(63)),
    limit("*.matchFields", Bound::Items(2)),
    limit("*.matchFields[].values", Bound::Items(4)),
    limit("*.matchLabels", Bound::Entries(8)),
    limit("*.matchLabels{}", Bound::Length(63)),
    limit("*LabelKeys", Bound::Items(4)),
    limit("*.namespaces", Bound::Items(4)),
    limit("*.resources.claims", Bound::Items(8)),
    limit("*.resources.limits", Bound::Entries(12)),
    limit("*.resources.requests", Bound::Entries(12)),
    limit("server.*.capabilities.*", Bound::Items(16)),
    // The model container.
    limit("server.command", Bound::Items(64)),
    limit("server.command[]", Bound::Length(4096)),
    limit("server.command", total(8 * 1024)),
    limit("server.args", Bound::Items(256)),
    limit("server.args[]", Bound::Length(16 * 1024)),
    limit("server.args", total(32 * 1024)),
    limit("server.env[].value", Bound::Length(16 * 1024)),
    limit(
        "server.env",
        Bound::Total {
            bytes: 32 * 1024,
            of: Some("value"),
            what: " in the values",
        },
    ),
    limit("server.volumeMounts", Bound::Items(12)),
    // Init and sidecar containers: helpers, smaller than the server.
    limit("server.*[].command", Bound::Items(16)),
    limit("server.*[].command[]", Bound::Length(1024)),
    limit("server.*[].command", total(1024)),
    limit("server.*[].args", Bound::Items(32)),
    limit("server.*[].args[]", Bound::Length(2048)),
    limit("server.*[].args", total(2 * 1024)),
    limit("server.*[].env", Bound::Items(8)),
    limit("server.*[].env[].value", Bound::Length(2048)),
    limit(
        "server.*[].env",
        Bound::Total {
            bytes: 2 * 1024,
            of: Some("value"),
            what: " in the values",
        },
    ),
    limit("server.*[].envFrom", Bound::Items(2)),
    limit("server.*[].ports", Bound::Items(2)),
    limit("server.*[].volumeMounts", Bound::Items(4)),
    limit("server.*[].restartPolicyRules", Bound::Items(2)),
    limit(
        "server.*[].restartPolicyRules[].exitCodes.values",
        Bound::Items(8),
    ),
    limit(
        "server.*[].*",
        Bound::Nested {
            items: 2,
            entries: 4,
        },
    ),
    limit("server.*[].*.capabilities.*", Bound::Items(4)),
    limit("server.*[].*Probe.exec.command", total(1024)),
    limit("server.*[].lifecycle.*.exec.command", total(1024)),
    limit("server.*[].*Probe.httpGet.httpHeaders", Bound::Items(2)),
    limit(
        "server.*[].lifecycle.*.httpGet.httpHeaders",
        Bound::Items(2),
    ),
    limit("server.*[].*.resources.*", Bound::Entries(4)),
    limit("server.*[].resources.*", Bound::Entries(4)),
    // The pod.
    limit("server.nodeSelector", Bound::Entries(32)),
    limit("server.nodeSelector{}", Bound::Length(63)),
    limit("server.tolerations", Bound::Items(16)),
    limit("server.tolerations[].value", Bound::Length(63)),
    limit(
        "server.affinity.pod*",
        Bound::Nested {
            items: 2,
            entries: 4,
        },
    ),
    limit("server.affinity.*DuringExecution", Bound::Items(2)),
    limit("server.affinity.pod*.matchExpressions", Bound::Items(2)),
    limit(
        "server.affinity.pod*.matchExpressions[].values",
        Bound::Items(4),
    ),
    limit("server.affinity.pod*.matchLabels", Bound::Entries(4)),
    limit("server.affinity.*.nodeSelectorTerms", Bound::Items(2)),
    limit("server.topologySpreadConstraints", Bound::Items(2)),
    limit(
        "server.volumes[]",
        Bound::OneOf {
            groups: VOLUME_SOURCES,
            what: "takes one source: configMap, csi, downwardAPI, emptyDir, ephemeral, hostPath, image, nfs, persistentVolumeClaim, projected or secret",
        },
    ),
    limit("server.volumes[].projected.sources", Bound::Items(2)),
    limit(
        "server.volumes[].projected.sources[].*.items",
        Bound::Items(4),
    ),
    limit(
        "server.volumes[].projected.sources[]",
        Bound::OneOf {
            groups: PROJECTED_SOURCES,
            what: "takes one source: clusterTrustBundle, configMap, downwardAPI, podCertificate, secret or serviceAccountToken",
        },
    ),
    limit("server.volumes[].csi.volumeAttributes", Bound::Entries(16)),
    limit(
        "server.volumes[].ephemeral.volumeClaimTemplate.metadata.*",
        Bound::Entries(8),
    ),
    limit("server.podSecurityContext.sysctls", Bound::Items(8)),
    limit(
        "server.podSecurityContext.supplementalGroups",
        Bound::Items(16),
    ),
    limit("server.hostAliases[].hostnames", Bound::Items(8)),
    limit("server.dnsConfig.nameservers", Bound::Items(3)),
    limit("server.dnsConfig.searches", Bound::Items(6)),
    limit("server.dnsConfig.options", Bound::Items(8)),
    // The autoscaler's metrics: a few each, with small selectors.
    limit(
        "autoscaling.*",
        Bound::Nested {
            items: 2,
            entries: 4,
        },
    ),
    limit("autoscaling.metrics", Bound::Items(6)),
    limit(
        "autoscaling.metrics[]",
        Bound::OneOf {
            groups: METRIC_SOURCES,
            what: "takes one source: resource, containerResource, pods, object or external",
        },
    ),
    limit("autoscaling.metrics[].*.matchExpressions", Bound::Items(2)),
    limit(
        "autoscaling.metrics[].*.matchExpressions[].values",
        Bound::Items(4),
    ),
    limit("autoscaling.metrics[].*.matchLabels", Bound::Entries(4)),
    limit("autoscaling.metrics[].*.name", Bound::Length(253)),
    limit("autoscaling.behavior.*.policies", Bound::Items(4)),
    // The rest of the spec.
    limit(
        "rollout.analysis.metrics[]",
        Bound::OneOf {
            groups: &[
                &[
                    "query",
                    "min",
                    "max",
                    "maxIncreasePercent",
                    "maxDecreasePercent",
                ],
                &["comparison"],
            ],
            what: "takes a query with bounds or a comparison, not both",
        },
    ),
    limit(
        "rollout.analysis.metrics[].comparison",
        Bound::OneOf {
            groups: &[&["failures", "total", "margin"], &["buckets", "worseWhen"]],
            what: "takes failures, total and margin (TwoProportions) or buckets and worseWhen (MannWhitney), not both",
        },
    ),
    limit("podMetadata.labels{}", Bound::Length(63)),
    limit("podMetadata.annotations{}", Bound::Length(16 * 1024)),
    limit(
        "podMetadata.annotations",
        Bound::Total {
            bytes: 32 * 1024,
            of: None,
            what: " in the values",
        },
    ),
];
