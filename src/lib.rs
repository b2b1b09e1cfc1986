//! model-operator: serves machine-learning models on Kubernetes and rolls bad
//! versions back automatically.
//!
//! The module tree follows the pipeline, and imports only go down it:
//! `controller` (the runtime) → `reconcile` (one pass) → `outbound`,
//! `status`, `cache` → `analysis`, `rollout`, `alerts`, `resources`,
//! `validate` → `api`. `tests/layout.rs` holds the tree to that direction
//! and to no import cycle.
#![forbid(unsafe_code)]

pub mod alerts; // pure: which alerts a state raises, their outbox
pub mod analysis; // pure: query templating, verdicts, statistics, schedule
pub mod api; // the ModelDeployment resource: spec, status, CRD
pub mod cache; // what the caches hold and how a pass reads them
pub mod client; // the Kubernetes client, its requests counted
pub mod controller; // the runtime: watches, queue, backoff, startup
pub mod digest; // the one SHA-256 helper
pub mod error; // why a reconcile or the runtime failed
#[cfg(test)]
mod fixtures; // unit tests' ModelDeployment builder and API-call checker
pub mod gates; // verdict types shared by rollout and analysis
pub mod http; // /metrics, /healthz, /readyz
pub mod leader; // leader election with fenced writes
pub mod metrics; // the operator's own Prometheus metrics
pub mod outbound; // every request beyond the API server (Prometheus, alerts)
pub mod quantity; // Kubernetes quantities compared by value
pub mod reasons; // every reason the operator writes
pub mod reconcile; // one pass: observe, measure, plan, persist, act, report
pub mod resources; // pure builders of the children, labels and names
pub mod rollout; // pure rollout decisions: observed state in, next action out
pub mod status; // pure status derivation: conditions, phase, bounds
pub mod telemetry; // logs
pub mod validate; // the spec parsed once into typed values

/// What `--version` prints after the binary's name: the crate version and,
/// when the build knew it, the git commit, e.g. `0.1.0 (commit 41133e1a2b3c)`
/// (build.rs).
pub const VERSION: &str = env!("MODEL_OPERATOR_VERSION");
