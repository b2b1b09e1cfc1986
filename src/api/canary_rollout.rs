//! The canary strategy: a share of the traffic on the new revision first,
//! in steps, judged side by side with the stable revision.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::analysis_spec::DURATION_PATTERN;

/// How a new revision replaces the running one.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RolloutStrategy {
    /// The Deployment replaces pods a few at a time (maxSurge,
    /// maxUnavailable); metric gates are checked while it does.
    #[default]
    RollingUpdate,
    /// The new revision runs as its own Deployment (`<name>-canary`) next to
    /// the stable one and gets a growing share of the traffic, step by step
    /// (`rollout.canary.steps`), while its metrics are compared with the
    /// stable revision's over the same window.
    Canary,
}

/// The canary's steps and, optionally, how its share of the traffic is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.dynamicStableScale) || !self.dynamicStableScale || has(self.trafficRouting)").message("canary.dynamicStableScale needs trafficRouting: without a router the traffic follows the pods, and the stable side cannot shrink without losing its share"))]
#[x_kube(validation = Rule::new("!has(self.warmRollbackWindow) || !has(self.dynamicStableScale) || !self.dynamicStableScale").message("canary.warmRollbackWindow cannot be used with dynamicStableScale: at 100% the stable side runs no pod to keep warm"))]
pub struct CanarySpec {
    /// The steps, in order: `setWeight` puts that share of the traffic on
    /// the new revision; `pause` holds the current share (the analysis keeps
    /// running). After the last step the new revision becomes Stable and
    /// replaces the stable one. A step advances only when the canary's pods
    /// are ready and every metric's latest check, made during the step,
    /// passed.
    #[schemars(length(min = 1, max = 20))]
    pub steps: Vec<CanaryStep>,

    /// How the traffic is split. Without it, traffic follows the pods
    /// behind the one Service: the canary gets
    /// ceil(weight% × stable replicas) pods, at least 1, on top of the
    /// stable pods, which all stay: a weight costs that many extra pods and
    /// their GPUs (100% doubles them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,

    /// Shrink the stable side as the canary's share grows, so that stable
    /// and canary together never run more than `replicas + 1` pods (and
    /// their GPUs); at 100% the stable side runs none. Needs
    /// `trafficRouting`; not with `autoscaling`. Each side moves a pod at a
    /// time: the canary gets a pod only while there is room for it, the
    /// route moves only as far as the canary's available pods carry, and a
    /// stable pod goes only once the route no longer sends its share to
    /// it. An abort or rollback runs it backwards: stable pods come back
    /// before the route returns to the stable side, the canary's pods go
    /// last. Off by default: with it, a rollback must wait for stable pods
    /// to start (and load the model) again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_stable_scale: bool,

    /// After a promotion, keep the previous revision's pods running for
    /// this long (a duration such as "10m", up to 24h), as the Deployment
    /// `<name>-previous`, which no Service sends traffic to. A
    /// post-promotion rollback (`analysis.postPromotion.action: Rollback`)
    /// inside the window hands those pods back to the stable Deployment:
    /// the previous model serves again without a pod started or a model
    /// loaded. They cost their pods and GPUs for the whole window, and the
    /// promotion needs no pod more than it does without it. Not with
    /// `dynamicStableScale` (at 100% the stable side runs no pod to keep)
    /// nor with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) <= duration('24h')")).message("canary.warmRollbackWindow must be a duration up to 24h, such as 10m or 1h"))]
    pub warm_rollback_window: Option<String>,
}

/// One step: exactly one of `setWeight` and `pause`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.setWeight) != has(self.pause)").message("every canary step is either setWeight or pause, not both or neither"))]
pub struct CanaryStep {
    /// Percent of the traffic on the new revision, 0 to 100. Without
    /// trafficRouting it is a share of pods: ceil(weight% × stable
    /// replicas) canary pods beside every stable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,

    /// Hold the current weight: for `duration`, or without it until
    /// `kubectl model promote NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
}

/// A pause step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long to hold, as a duration such as "2m" (up to 24h). Without
    /// it, the canary waits for `kubectl model promote NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION_PATTERN}') && duration(self) <= duration('24h')")).message("canary pause.duration must be a duration up to 24h, such as 30s, 2m or 1h"))]
    pub duration: Option<String>,
}

/// A traffic router that splits requests by weight.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Split the traffic with a Gateway API HTTPRoute.
    #[serde(
        default,
        rename = "gatewayAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiRouting>,
}

/// The user's HTTPRoute whose backend weights the operator sets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    /// Name of an HTTPRoute in the ModelDeployment's namespace with a rule
    /// whose only backendRefs are the Services `<name>-stable` and
    /// `<name>-canary` (the operator creates them). The operator sets only
    /// those two `weight` fields, with a JSON patch; everything else stays
    /// the user's. A missing or unsuitable route is reported as
    /// InvalidSpec and nothing changes.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("gatewayAPI.httpRoute must be the name of an HTTPRoute: lowercase letters, digits, '-' or '.'"))]
    pub http_route: String,
}

/// Where the canary of the revision being rolled out stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The revision running as the canary.
    pub revision: i64,
    /// Index of the current step, from 0; equal to the number of steps when
    /// every step is done (the canary is being promoted).
    pub step_index: i32,
    /// Number of steps in the plan.
    pub steps: i32,
    /// Percent of the traffic on the canary now.
    pub weight: i32,
    /// When this canary started; `kubectl model promote` and `abort` name
    /// it, so an annotation left from an earlier canary of the same revision
    /// acts on nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the current step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// The current step is a pause without duration: it waits for
    /// `kubectl model promote NAME`.
    #[serde(default)]
    pub waiting_for_promotion: bool,
    /// "step 2/4: 10% on revision 5", for `kubectl get`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
}
