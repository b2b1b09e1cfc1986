//! Pure rollout logic: observed state in, verdicts out.

mod progress;

pub use progress::{Counts, Progress, progress};
