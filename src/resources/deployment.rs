use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::pod::pod_template;
use super::storage::Platform;
use super::{child_meta, labels};
use crate::api::{ModelDeployment, PodReplacement, RolloutSpec, ServedVersion};

/// The Deployment running `served` as revision `revision`. While the
/// built-in HorizontalPodAutoscaler scales it, `replicas` is left out so the
/// operator never fights it; an external scaler's count comes through
/// `spec.replicas`.
pub fn deployment(
    md: &ModelDeployment,
    served: &ServedVersion,
    revision: i64,
    platform: &Platform,
) -> Deployment {
    let spec = &md.spec;
    Deployment {
        metadata: child_meta(md, served.model_name()),
        spec: Some(DeploymentSpec {
            replicas: (!spec.hpa_scales()).then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels::selector(&md.name_any())),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(rolling_update(&spec.rollout)),
            }),
            progress_deadline_seconds: Some(spec.rollout.progress_deadline_seconds),
            revision_history_limit: Some(spec.revision_history_limit),
            template: pod_template(
                &md.name_any(),
                md.metadata.uid.as_deref(),
                served,
                revision,
                platform,
            ),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The Deployment's pace. ReplaceInPlace takes no surge and at least one
/// pod away at a time (a percentage that rounds down to 0 pods the
/// Deployment controller itself raises to 1 when maxSurge is 0), so a
/// rollback, which is this same Deployment on the older template,
/// replaces in place too.
pub fn rolling_update(rollout: &RolloutSpec) -> RollingUpdateDeployment {
    match rollout.pod_replacement {
        PodReplacement::Surge => RollingUpdateDeployment {
            max_surge: Some(rollout.max_surge.clone()),
            max_unavailable: Some(rollout.max_unavailable.clone()),
        },
        PodReplacement::ReplaceInPlace => RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(if is_zero(&rollout.max_unavailable) {
                IntOrString::Int(1)
            } else {
                rollout.max_unavailable.clone()
            }),
        },
    }
}

/// 0 or 0%: the API server refuses either beside maxSurge 0.
fn is_zero(value: &IntOrString) -> bool {
    match value {
        IntOrString::Int(n) => *n < 1,
        IntOrString::String(percent) => percent.trim_end_matches('%').parse::<u64>() == Ok(0),
    }
}

/// Name of the canary Deployment of ModelDeployment `name`.
pub fn canary_name(name: &str) -> String {
    format!("{name}-canary")
}

/// The canary Deployment: `served` as revision `revision` with exactly
/// `replicas` pods (the step's share of the stable count; never the HPA's).
/// Its pod template is the one the stable Deployment gets for `revision`,
/// label for label, so a promotion can hand the canary's ReplicaSet, pods
/// and all, to the stable Deployment (which adopts a ReplicaSet whose
/// template equals its own). Its selector adds the revision to the stable
/// one's, so it never counts the stable pods; a selector cannot change, so
/// a canary of another revision is a new canary Deployment.
pub fn canary_deployment(
    md: &ModelDeployment,
    served: &ServedVersion,
    revision: i64,
    replicas: i32,
    platform: &Platform,
) -> Deployment {
    let mut d = deployment(md, served, revision, platform);
    d.metadata.name = Some(canary_name(&md.name_any()));
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = Some(replicas);
        spec.selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(labels::REVISION.to_string(), revision.to_string());
    }
    d
}

/// Name of the Deployment keeping the previous revision's pods warm.
pub fn warm_name(name: &str) -> String {
    format!("{name}-previous")
}

/// `<name>-previous`: the previous revision's pods kept after a promotion
/// (`warmRollbackWindow`), made as the canary Deployment is: the stable
/// template of `revision` (so it adopts the stable Deployment's ReplicaSet
/// as its own) and a selector of that revision alone (so the stable
/// Deployment never counts its pods, nor it theirs).
pub fn warm_deployment(
    md: &ModelDeployment,
    served: &ServedVersion,
    revision: i64,
    replicas: i32,
    platform: &Platform,
) -> Deployment {
    let mut d = canary_deployment(md, served, revision, replicas, platform);
    d.metadata.name = Some(warm_name(&md.name_any()));
    d
}

/// The revision a canary Deployment's selector is for: `None` for one of
/// an older operator, whose selector named the track instead.
pub fn selected_revision(deployment: &Deployment) -> Option<i64> {
    deployment
        .spec
        .as_ref()?
        .selector
        .match_labels
        .as_ref()?
        .get(labels::REVISION)?
        .parse()
        .ok()
}

/// The revision a Deployment's pod template runs, from its label.
pub fn revision_of(deployment: &Deployment) -> Option<i64> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .labels
        .as_ref()?
        .get(labels::REVISION)?
        .parse()
        .ok()
}
