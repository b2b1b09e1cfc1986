//! Pods the API server refuses to create. The ReplicaSet controller cannot
//! create a pod that Pod Security admission, a LimitRange, a ResourceQuota
//! or a policy refuses; it records `ReplicaFailure=True, reason
//! FailedCreate` with the API server's answer, and the Deployment
//! controller mirrors it onto the Deployment. Such a revision never gets a
//! pod: waiting for the progress deadline would only delay the verdict.
//!
//! Only refusals that cannot clear by themselves are a verdict. A quota
//! that one pod fits into but that is full for now (the old pods of a
//! rolling update still hold it), an unreachable webhook, a missing
//! ServiceAccount or a terminating namespace may clear, and are left to the
//! progress deadline.

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use super::foreign::{name, phrase};
use super::pod::WatchedPod;
use crate::gates::Failure;
use crate::reasons;
use crate::resources::labels;

/// Bytes of a policy's own explanation repeated in a message.
const EXPLANATION: usize = 160;
/// Pod Security checks named in a message; the rest are counted.
const CHECKS: usize = 6;

/// `revision`'s pods are refused: the Deployment's ReplicaFailure condition,
/// when it concerns `revision`'s ReplicaSet, reduced to the operator's words.
///
/// The Deployment carries one ReplicaFailure, its new ReplicaSet's in
/// preference to an old one's, and keeps the first message while the
/// reason stays FailedCreate. So the condition is read only once the
/// Deployment controller has seen the current template, and not when the
/// refused pod's name shows a ReplicaSet whose pods run another revision.
pub fn failure_of<'a>(
    deployment: &Deployment,
    pods: impl IntoIterator<Item = &'a WatchedPod>,
    revision: i64,
) -> Option<Failure> {
    let status = deployment.status.as_ref()?;
    if status.observed_generation.unwrap_or(0) < deployment.metadata.generation.unwrap_or(0) {
        return None;
    }
    let message = status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "ReplicaFailure"
                && c.status == "True"
                && c.reason.as_deref() == Some("FailedCreate")
        })?
        .message
        .as_deref()?;
    if let Some(hash) = refused_hash(message, &deployment.name_any()) {
        let revision = revision.to_string();
        let of_another = pods.into_iter().any(|p| {
            let labels = p.metadata.labels.as_ref();
            labels
                .and_then(|l| l.get("pod-template-hash"))
                .map(String::as_str)
                == Some(hash)
                && labels.and_then(|l| l.get(labels::REVISION)) != Some(&revision)
        });
        if of_another {
            return None;
        }
    }
    classify(message)
}

/// The pod-template-hash of the refused pod's ReplicaSet: its name is
/// `<deployment>-<hash>-<suffix>` (or without the suffix, when the API
/// server answered before generating it).
fn refused_hash<'m>(message: &'m str, deployment: &str) -> Option<&'m str> {
    let (pod, _) = pod_and_rest(message)?;
    let rest = pod.strip_prefix(deployment)?.strip_prefix('-')?;
    let hash = rest.split('-').next()?;
    (!hash.is_empty()).then_some(hash)
}

/// `pods "NAME" is forbidden: REST` and `Pod "NAME" is invalid: REST` as
/// (NAME, REST).
fn pod_and_rest(message: &str) -> Option<(&str, &str)> {
    let after = message
        .strip_prefix("pods \"")
        .or_else(|| message.strip_prefix("Pod \""))?;
    let (pod, rest) = after.split_once('"')?;
    let rest = rest
        .strip_prefix(" is forbidden: ")
        .or_else(|| rest.strip_prefix(" is invalid: "))?;
    Some((pod, rest))
}

/// A FailedCreate message as a verdict, or `None` when it may clear.
pub fn classify(message: &str) -> Option<Failure> {
    let invalid = message.starts_with("Pod \"") && message.contains("\" is invalid: ");
    let rest = pod_and_rest(message).map_or(message, |(_, rest)| rest);
    let forbidden = |message: String| {
        Some(Failure {
            reason: reasons::PODS_FORBIDDEN,
            message,
        })
    };
    if let Some(rest) = rest.strip_prefix("violates PodSecurity \"") {
        return forbidden(pod_security(rest));
    }
    if let Some(rest) = rest.strip_prefix("exceeded quota: ") {
        return exceeded_quota(rest);
    }
    if let Some(rest) = rest.strip_prefix("failed quota: ") {
        let (quota, what) = rest.split_once(": ")?;
        let what = what.strip_prefix("must specify ")?;
        return Some(Failure {
            reason: reasons::QUOTA_EXCEEDED,
            message: format!(
                "pods refused by ResourceQuota {}: must specify {}",
                name(quota),
                phrase(what, EXPLANATION)
            ),
        });
    }
    if rest.contains(" usage per ") || rest.contains(" limit to request ratio per ") {
        let constraints = rest.trim_start_matches('[').trim_end_matches(']');
        return forbidden(format!(
            "pods refused by a LimitRange: {}",
            phrase(constraints, 2 * EXPLANATION)
        ));
    }
    if let Some(rest) = rest.strip_prefix("ValidatingAdmissionPolicy '") {
        let (policy, rest) = rest.split_once('\'')?;
        let why = rest.split_once("denied request: ").map_or("", |(_, w)| w);
        return forbidden(format!(
            "pods refused by ValidatingAdmissionPolicy {}: {}",
            name(policy),
            phrase(why, EXPLANATION)
        ));
    }
    if let Some(rest) = rest.strip_prefix("admission webhook \"") {
        let (webhook, rest) = rest.split_once('"')?;
        let why = rest.strip_prefix(" denied the request: ")?;
        return forbidden(format!(
            "pods refused by admission webhook {}: {}",
            name(webhook),
            phrase(why, EXPLANATION)
        ));
    }
    if invalid {
        return forbidden(format!(
            "pods refused as invalid: {}",
            phrase(rest, 2 * EXPLANATION)
        ));
    }
    None
}

/// `LEVEL:VERSION": CHECK (DETAIL), CHECK (DETAIL), ...`: the level and
/// each check, with the containers its detail names.
fn pod_security(rest: &str) -> String {
    let (level, checks) = rest.split_once("\": ").unwrap_or((rest, ""));
    let level = level.split(':').next().unwrap_or_default();
    let checks = top_level_items(checks);
    let mut named: Vec<String> = checks.iter().take(CHECKS).map(|c| check(c)).collect();
    if checks.len() > CHECKS {
        named.push(format!("and {} more", checks.len() - CHECKS));
    }
    format!(
        "pods refused by Pod Security \"{}\": {}",
        name(level),
        named.join(", ")
    )
}

/// `runAsNonRoot != true (pod or container "a" must set ...)` as
/// `runAsNonRoot != true (container a)`.
fn check(item: &str) -> String {
    let (what, detail) = item.split_once(" (").unwrap_or((item, ""));
    // The containers are quoted before "must"; values after it are quoted
    // too ("RuntimeDefault").
    let who = detail.split(" must ").next().unwrap_or_default();
    let containers: Vec<String> = who
        .split('"')
        .skip(1)
        .step_by(2)
        .take(4)
        .map(name)
        .collect();
    let what = phrase(what, 64);
    match containers.len() {
        0 => what,
        1 => format!("{what} (container {})", containers[0]),
        _ => format!("{what} (containers {})", containers.join(", ")),
    }
}

/// Splits at the commas outside parentheses.
fn top_level_items(s: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(s[start..].trim());
    items.retain(|i| !i.is_empty());
    items
}

/// `NAME, requested: R, used: U, limited: L` (each a `resource=quantity`
/// list): a verdict only when one pod asks for more than the quota holds.
fn exceeded_quota(rest: &str) -> Option<Failure> {
    let (quota, rest) = rest.split_once(", requested: ")?;
    let (requested, rest) = rest.split_once(", used: ")?;
    let (_, limited) = rest.split_once(", limited: ")?;
    let limited = pairs(limited);
    let (resource, asked, allowed) = pairs(requested).into_iter().find_map(|(r, asked)| {
        let allowed = limited.iter().find(|(l, _)| *l == r)?.1;
        let more = crate::quantity::parse(asked)? > crate::quantity::parse(allowed)?;
        more.then_some((r, asked, allowed))
    })?;
    Some(Failure {
        reason: reasons::QUOTA_EXCEEDED,
        message: format!(
            "pods refused by ResourceQuota {}: exceeded {} (one pod requests {}, the quota allows {})",
            name(quota),
            phrase(resource, 64),
            phrase(asked, 32),
            phrase(allowed, 32)
        ),
    })
}

fn pairs(list: &str) -> Vec<(&str, &str)> {
    list.split(',').filter_map(|p| p.split_once('=')).collect()
}

#[cfg(test)]
mod tests;
