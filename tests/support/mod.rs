//! Shared end-to-end test support, by concern: the local cluster, waits,
//! the operator as a real process, one test's fixture (`Setup`) and its
//! verbs, Events, the real Prometheus, HTTP stand-ins, request counters and shared models.
#![allow(dead_code, unused_imports)] // each test binary uses its own part of the support

pub mod autoscaling;
pub mod cluster;
pub mod events;
pub mod fakes;
pub mod gates;
pub mod gateway;
pub mod helm;
pub mod identity;
pub mod largest;
pub mod models;
pub mod operator;
pub mod pod_watch;
pub mod prometheus;
pub mod receivers;
pub mod requests;
pub mod rng;
pub mod servers;
pub mod setup;
pub mod wait;

pub use cluster::*;
pub use events::*;
pub use fakes::Exporter;
pub use largest::*;
pub use models::*;
pub use operator::*;
pub use prometheus::*;
pub use requests::*;
pub use setup::{LEASE_TIMING, Setup};
pub use wait::*;
