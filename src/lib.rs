//! model-operator: serves machine-learning models on Kubernetes and rolls bad
//! versions back automatically.
//!
//! The module tree follows the reconcile pipeline: `api` (the resource),
//! `validate` (the spec parsed once), `resources` (pure builders, label and
//! annotation keys), `rollout` and `analysis` (pure decisions, sharing the
//! verdict types of `gates`), `alerts`, and `controller`, whose `reconcile`
//! runs observe → validate → measure → plan → persist → act → report.
//! `reasons` holds every reason the operator writes; `leader` elects the one
//! replica that reconciles.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod analysis;
pub mod api;
pub mod client;
pub mod controller;
pub mod egress;
#[cfg(test)]
mod fixtures;
pub mod gates;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod quantity;
pub mod reasons;
pub mod resources;
pub mod rollout;
pub mod secrets;
pub mod telemetry;
pub mod validate;

/// What `--version` prints after the binary's name: the crate version and,
/// when the build knew it, the git commit, e.g. `0.1.0 (commit 41133e1a2b3c)`
/// (build.rs).
pub const VERSION: &str = env!("MODEL_OPERATOR_VERSION");
