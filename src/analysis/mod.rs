//! Metric analysis: Prometheus queries with templating, verdicts on their
//! values, and the progress of a revision's analysis.

pub mod comparison;
pub mod duration;
pub mod run;
pub mod schedule;
pub mod scope;
pub mod template;
pub mod verdict;
pub mod window;
