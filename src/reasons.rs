//! Every reason the operator writes: in conditions, history entries, Events
//! and alert labels. Users filter on these (`kubectl get events
//! --field-selector reason=RolledBack`, Argo CD health, alert routes), so
//! they are part of the API: one home, one spelling.

// Why a revision failed (history, Degraded messages, alert labels).
pub const CRASH_LOOP: &str = "CrashLoopBackOff";
pub const IMAGE_PULL_FAILED: &str = "ImagePullFailed";
/// The runtime cannot start a container (RunContainerError).
pub const CONTAINER_FAILED: &str = "ContainerFailed";
/// The kubelet cannot configure a container, or the runtime cannot create
/// it (CreateContainerConfigError, CreateContainerError): a missing Secret
/// key, a non-numeric image user under runAsNonRoot, ...
pub const CONTAINER_CONFIG_ERROR: &str = "ContainerConfigError";
/// An init container crash-loops, cannot be pulled or configured, or keeps
/// ending in error.
pub const INIT_CONTAINER_FAILED: &str = "InitContainerFailed";
/// The API server refuses to create the revision's pods: Pod Security
/// admission, a LimitRange, a ValidatingAdmissionPolicy or webhook, or a
/// pod the template makes invalid.
pub const PODS_FORBIDDEN: &str = "PodsForbidden";
/// A ResourceQuota refuses the revision's pods and cannot ever admit one:
/// one pod asks for more than the quota holds, or lacks a request or limit
/// the quota requires. Its own reason, apart from PodsForbidden, because the
/// fix is elsewhere (the namespace's quota, often another team's) and
/// alert routes tell it apart.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// The scheduler cannot place the revision's new pods for lack of a
/// resource (`nvidia.com/gpu`, cpu, ...), and the rollout can make no other
/// progress (`rollout::capacity`): the surge deadlock of GPU clusters.
pub const INSUFFICIENT_CAPACITY: &str = "InsufficientCapacity";
/// The scheduler cannot place the revision's new pods because no node
/// matches their selector, affinity, tolerations or spread constraints.
pub const NO_MATCHING_NODE: &str = "NoMatchingNode";
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
pub const POST_PROMOTION_BREACH: &str = "PostPromotionBreach";
/// A canary aborted by hand (`kubectl model abort`).
pub const ABORTED: &str = "Aborted";

// What happened to a revision (history entries).
pub const ROLLOUT_STARTED: &str = "RolloutStarted";
pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
pub const REINSTATED: &str = "Reinstated";
pub const SUPERSEDED: &str = "Superseded";

// Conditions.
pub const PENDING: &str = "Pending";
pub const SCALED_TO_ZERO: &str = "ScaledToZero";
pub const SERVING: &str = "Serving";
pub const NOT_ENOUGH_REPLICAS: &str = "NotEnoughReplicas";
pub const INVALID_SPEC: &str = "InvalidSpec";
/// A child's name is taken by an object this ModelDeployment does not own.
pub const NAME_CONFLICT: &str = "NameConflict";
pub const ROLLED_BACK: &str = "RolledBack";
pub const ROLLOUT_FAILED: &str = "RolloutFailed";
pub const ANALYSIS_INCONCLUSIVE: &str = "AnalysisInconclusive";
pub const ANALYSING: &str = "Analysing";
pub const PAUSED: &str = "Paused";
pub const CREATING: &str = "Creating";
pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
pub const METRIC_BREACH: &str = "MetricBreach";
pub const AS_EXPECTED: &str = "AsExpected";
/// A canary is at one of its steps.
pub const CANARY_STEP: &str = "CanaryStep";
/// A canary's pause without duration waits for `kubectl model promote`.
pub const CANARY_PAUSED: &str = "CanaryPaused";
/// Pods of the revision rolling out cannot be scheduled (yet):
/// `status.unschedulable` says which and why.
pub const PODS_UNSCHEDULABLE: &str = "PodsUnschedulable";

// Events only.
pub const CREATED: &str = "Created";
pub const DRIFT_CORRECTED: &str = "DriftCorrected";
pub const DELETED: &str = "Deleted";
/// This operator version cannot decode the ModelDeployment and skips it.
pub const UNDECODABLE: &str = "Undecodable";
