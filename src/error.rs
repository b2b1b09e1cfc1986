use thiserror::Error;

/// Why a reconcile could not finish. An invalid spec is not an error: it is
/// reported in status and waits for the user.
#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    #[error("cannot serialize the {kind}: {source}")]
    Serialize {
        kind: &'static str,
        source: serde_json::Error,
    },

    #[error("cannot decode the {kind}: {source}")]
    Decode {
        kind: &'static str,
        source: serde_json::Error,
    },

    #[error("the API server refused the {kind}: {message}")]
    Rejected { kind: &'static str, message: String },

    #[error("revision {revision} was taken by another writer for a different version; retrying")]
    RevisionTaken { revision: i64 },

    #[error("the snapshot of revision {revision} is missing; cannot roll back to it")]
    MissingRevision { revision: i64 },

    /// A child's name is taken by an object without this ModelDeployment's
    /// controller owner reference: it is never created over, patched,
    /// adopted or deleted.
    #[error(
        "{kind} {namespace}/{name} exists and is not owned by this ModelDeployment; the operator leaves it alone: delete or rename it, or rename the ModelDeployment"
    )]
    NameConflict {
        kind: &'static str,
        namespace: String,
        name: String,
    },

    #[error("ModelDeployment has no namespace")]
    NoNamespace,

    #[error("cannot build the HTTP client for Prometheus and alerts: {0}")]
    HttpClient(#[from] reqwest::Error),

    /// A bug: the pass panicked. Contained to this object's pass (every
    /// other object keeps being reconciled) and retried with its backoff.
    #[error("the reconcile panicked (a bug, please report it): {0}")]
    Panicked(String),
}

impl Error {
    /// Short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(_) => "api",
            Error::Serialize { .. } => "serialize",
            Error::Decode { .. } => "decode",
            Error::Rejected { .. } => "rejected",
            Error::RevisionTaken { .. } => "revision_taken",
            Error::MissingRevision { .. } => "missing_revision",
            Error::NameConflict { .. } => "name_conflict",
            Error::NoNamespace => "no_namespace",
            Error::HttpClient(_) => "http_client",
            Error::Panicked(_) => "panic",
        }
    }
}
