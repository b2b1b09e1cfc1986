//! Alerts: which ones a ModelDeployment's state raises (pure), and their
//! delivery to Alertmanager and a webhook (never in the reconcile's way).

pub mod desired;
pub mod outbox;

pub use desired::{Transition, desired, transition};
