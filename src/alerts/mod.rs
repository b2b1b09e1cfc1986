//! Alerts: which ones a ModelDeployment's state raises (pure), the
//! lifecycle notices a webhook may ask for, what their messages say, and
//! their delivery to Alertmanager and a webhook (never in the reconcile's way).

pub mod desired;
pub mod lifecycle;
pub mod messages;
pub mod outbox;
pub mod routing;

pub use desired::{Transition, desired, transition};
