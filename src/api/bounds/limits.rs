//! The limits of the fields that carry text, by path under `spec`; every
//! other node gets `super::DEFAULTS`.

/// A limit on one node, named by its path under `spec`: `a.b` a field,
/// `a.b[]` the items of list `a.b`, `a.b{}` the values of map `a.b`.
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

/// The fields that carry text, sized for what real model servers are given
/// (vLLM, Triton, MLServer and TorchServe flags, JSON configs in env).
pub const LIMITS: &[Limit] = &[
    Limit {
        path: "server.command",
        bound: Bound::Items(64),
    },
    Limit {
        path: "server.command[]",
        bound: Bound::Length(4096),
    },
    Limit {
        path: "server.command",
        bound: Bound::Total {
            bytes: 8 * 1024,
            of: None,
            what: "",
        },
    },
    Limit {
        path: "server.args",
        bound: Bound::Items(256),
    },
    Limit {
        path: "server.args[]",
        bound: Bound::Length(16 * 1024),
    },
    Limit {
        path: "server.args",
        bound: Bound::Total {
            bytes: 32 * 1024,
            of: None,
            what: "",
        },
    },
    Limit {
        path: "server.env[].name",
        bound: Bound::Length(128),
    },
    Limit {
        path: "server.env[].valueFrom",
        bound: Bound::OneOf {
            groups: &[
                &["configMapKeyRef"],
                &["fieldRef"],
                &["fileKeyRef"],
                &["resourceFieldRef"],
                &["secretKeyRef"],
            ],
            what: "takes one source: configMapKeyRef, fieldRef, fileKeyRef, resourceFieldRef or secretKeyRef",
        },
    },
    Limit {
        path: "server.readinessProbe",
        bound: Bound::OneOf {
            groups: PROBE_HANDLERS,
            what: "takes one handler: exec, grpc, httpGet or tcpSocket",
        },
    },
    Limit {
        path: "server.livenessProbe",
        bound: Bound::OneOf {
            groups: PROBE_HANDLERS,
            what: "takes one handler: exec, grpc, httpGet or tcpSocket",
        },
    },
    Limit {
        path: "rollout.analysis.metrics[]",
        bound: Bound::OneOf {
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
    },
    Limit {
        path: "rollout.analysis.metrics[].comparison",
        bound: Bound::OneOf {
            groups: &[&["failures", "total", "margin"], &["buckets", "worseWhen"]],
            what: "takes failures, total and margin (TwoProportions) or buckets and worseWhen (MannWhitney), not both",
        },
    },
    Limit {
        path: "server.env[].value",
        bound: Bound::Length(16 * 1024),
    },
    Limit {
        path: "server.env",
        bound: Bound::Total {
            bytes: 32 * 1024,
            of: Some("value"),
            what: " in the values",
        },
    },
    Limit {
        path: "server.readinessProbe.exec.command[]",
        bound: Bound::Length(4096),
    },
    Limit {
        path: "server.readinessProbe.exec.command",
        bound: Bound::Total {
            bytes: 8 * 1024,
            of: None,
            what: "",
        },
    },
    Limit {
        path: "server.readinessProbe.httpGet.path",
        bound: Bound::Length(2048),
    },
    Limit {
        path: "server.readinessProbe.httpGet.httpHeaders",
        bound: Bound::Items(8),
    },
    Limit {
        path: "server.readinessProbe.httpGet.httpHeaders[].value",
        bound: Bound::Length(1024),
    },
    Limit {
        path: "server.livenessProbe.exec.command[]",
        bound: Bound::Length(4096),
    },
    Limit {
        path: "server.livenessProbe.exec.command",
        bound: Bound::Total {
            bytes: 8 * 1024,
            of: None,
            what: "",
        },
    },
    Limit {
        path: "server.livenessProbe.httpGet.path",
        bound: Bound::Length(2048),
    },
    Limit {
        path: "server.livenessProbe.httpGet.httpHeaders",
        bound: Bound::Items(8),
    },
    Limit {
        path: "server.livenessProbe.httpGet.httpHeaders[].value",
        bound: Bound::Length(1024),
    },
    Limit {
        path: "server.nodeSelector",
        bound: Bound::Entries(32),
    },
    Limit {
        path: "server.nodeSelector{}",
        bound: Bound::Length(63),
    },
    Limit {
        path: "server.tolerations",
        bound: Bound::Items(16),
    },
    Limit {
        path: "server.resources.claims",
        bound: Bound::Items(8),
    },
    Limit {
        path: "server.tolerations[].value",
        bound: Bound::Length(63),
    },
    Limit {
        path: "podMetadata.labels{}",
        bound: Bound::Length(63),
    },
    Limit {
        path: "podMetadata.annotations{}",
        bound: Bound::Length(16 * 1024),
    },
    Limit {
        path: "podMetadata.annotations",
        bound: Bound::Total {
            bytes: 32 * 1024,
            of: None,
            what: " in the values",
        },
    },
];
