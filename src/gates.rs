//! What a revision's checks conclude, shared by the pure rollout decision
//! (`rollout`) and the metric analysis (`analysis`), so that neither imports
//! the other.

/// Why a revision's pods are failing, for status, history and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// CamelCase reason, one of `reasons` (CrashLoopBackOff, PodsForbidden, ...).
    pub reason: &'static str,
    /// E.g. "2/2 new pods in CrashLoopBackOff".
    pub message: String,
}

/// How the revision the Deployment runs is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Pods are still starting or being replaced.
    Rolling,
    /// Every pod runs it and is available.
    Complete,
    /// It cannot run: crash loop, image pull failure, refused pods, or
    /// progress deadline.
    Failed(Failure),
}

/// What the analysis says about the revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Keep going: checks or bake time are not done.
    Pending,
    /// Every gate passed on real data after the bake time (rollout), or no
    /// breach (guard).
    Passed,
    /// A gate failed more than `failureLimit` times: roll back.
    Failed(Failure),
    /// Too many checks without an answer: stop where it is, never promote.
    Halted(String),
}

/// The Stable revision broke its metric gates after promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breach {
    pub failure: Failure,
    /// The Stable revision before it, to go back to (`None`: there is none,
    /// so the breach can only be reported).
    pub previous_stable: Option<i64>,
}
