//! model-operator: serves machine-learning models on Kubernetes and rolls bad
//! versions back automatically.
//!
//! The module tree is the reconcile pipeline: `api` (the resource), `validate`,
//! `resources` (pure builders), `rollout` (pure decisions) and `controller`
//! (apply, status, events, the loop); `leader` elects the one replica that
//! reconciles.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod analysis;
pub mod api;
pub mod client;
pub mod controller;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod quantity;
pub mod resources;
pub mod rollout;
pub mod secrets;
pub mod telemetry;
pub mod validate;

/// What `--version` prints after the binary's name: the crate version and,
/// when the build knew it, the git commit, e.g. `0.1.0 (commit 41133e1a2b3c)`
/// (build.rs).
pub const VERSION: &str = env!("MODEL_OPERATOR_VERSION");
