//! Pure rollout logic: observed state in, verdicts and next actions out.

pub mod canary;
pub mod capacity;
pub mod container;
pub mod decide;
pub mod foreign;
pub mod health;
pub mod history;
pub mod pod;
mod progress;
pub mod promotion;
pub mod refused;
pub mod revision;
pub mod stable_scale;

pub use progress::{Counts, Progress, progress};
