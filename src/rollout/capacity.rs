//! Pods the scheduler cannot place. On GPU clusters the most common rollout
//! failure is the surge deadlock: the new pod waits for a GPU that the old
//! pods hold, and the old pods go only once the new one is available. The
//! Deployment's progress deadline would report it minutes later as a
//! generic timeout; here it is named, with the resource, as soon as the
//! rollout can make no other progress and a short grace has passed.
//!
//! "No other progress" is judged from what the cluster shows, never from
//! the scheduler's message alone: that message is as old as the pod's last
//! scheduling attempt, and a pod that is still terminating may be about to
//! free the room. So a rollout is *stuck* only when none of the
//! Deployment's pods is terminating and every pod it has, but the
//! unschedulable ones, is available: then the Deployment controller has
//! nothing left to do until capacity appears. The grace counts from when
//! the operator first saw it stuck (kept in status, so a restart only makes
//! it count again from later), which also covers the scheduler's retry
//! backoff (at most 10 s by default) after room was freed.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::Counts;
use super::pod::WatchedPod;
use crate::api::UnschedulableStatus;
use crate::gates::Failure;
use crate::reasons;
use crate::resources::labels;

/// Resource names kept of one scheduler message.
pub const RESOURCES_KEPT: usize = 8;

/// Why no node takes the pods, in the operator's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Nodes that could take them lack these resources (sorted, e.g.
    /// `nvidia.com/gpu`); the others do not match them.
    Insufficient(Vec<String>),
    /// No node matches their node selector, affinity, tolerations or
    /// spread constraints, or every node is cordoned.
    NoMatchingNode,
}

impl Cause {
    pub fn reason(&self) -> &'static str {
        match self {
            Cause::Insufficient(_) => reasons::INSUFFICIENT_CAPACITY,
            Cause::NoMatchingNode => reasons::NO_MATCHING_NODE,
        }
    }

    /// `nodes`: for Insufficient, the nodes that match the pods (only
    /// capacity keeps them off); for NoMatchingNode, every node.
    fn explain(&self, nodes: Option<u32>) -> String {
        const MATCH: &str = "their node selector, affinity, tolerations or spread constraints";
        match (self, nodes) {
            (Cause::Insufficient(resources), nodes) => {
                let nodes = match nodes {
                    Some(1) => "the 1 node that matches them".to_string(),
                    Some(n) => format!("any of the {n} nodes that match them"),
                    None => "any node".to_string(),
                };
                format!("not enough {} on {nodes}", resources.join(", "))
            }
            (Cause::NoMatchingNode, Some(1)) => format!("the 1 node does not match {MATCH}"),
            (Cause::NoMatchingNode, Some(n)) => format!("none of the {n} nodes matches {MATCH}"),
            (Cause::NoMatchingNode, None) => format!("no node matches {MATCH}"),
        }
    }
}

/// The scheduler's message reduced to a cause: `None` when any node was
/// refused for a reason the operator does not know to be lasting (a volume
/// still binding, a plugin's own reason), since waiting may fix those.
/// Returns the cause and the nodes it is about: for Insufficient, those
/// the pods match (the scheduler counts a node once per plugin that refused
/// it, so these are the total less the mismatched), else all.
///
/// The message looks like `0/5 nodes are available: 1 Insufficient
/// nvidia.com/gpu, 4 node(s) didn't match Pod's node affinity/selector.
/// preemption: ...`; only recognised words are kept, never the text.
pub fn classify(message: &str) -> Option<(Cause, Option<u32>)> {
    let placement = message.split(" preemption:").next().unwrap_or(message);
    let (head, reasons) = placement.split_once(" nodes are available: ")?;
    let nodes = head
        .rsplit('/')
        .next()
        .and_then(|n| n.trim().parse::<u32>().ok());
    let mut resources: Vec<String> = Vec::new();
    let mut mismatched: u32 = 0;
    for item in reasons.trim().trim_end_matches('.').split(", ") {
        let item = item.trim();
        // "4 node(s) didn't match ..." / "1 Insufficient cpu"
        let (count, text) = item
            .split_once(' ')
            .and_then(|(count, rest)| Some((count.parse::<u32>().ok()?, rest)))
            .unwrap_or((0, item));
        if let Some(resource) = text.strip_prefix("Insufficient ") {
            resources.push(resource_name(resource)?);
        } else if text == "Too many pods" {
            resources.push("pods".to_string());
        } else if lasting_mismatch(text) {
            mismatched = mismatched.saturating_add(count);
        } else {
            return None;
        }
    }
    resources.sort();
    resources.dedup();
    resources.truncate(RESOURCES_KEPT);
    match resources.is_empty() {
        true => Some((Cause::NoMatchingNode, nodes)),
        false => Some((
            Cause::Insufficient(resources),
            nodes.map(|n| n.saturating_sub(mismatched)),
        )),
    }
}

/// Node refusals that stay until the cluster's nodes change.
fn lasting_mismatch(text: &str) -> bool {
    [
        "didn't match Pod's node affinity/selector",
        "didn't match pod affinity rules",
        "didn't match pod anti-affinity rules",
        "didn't match pod topology spread constraints",
        "had untolerated taint",
        "were unschedulable",
    ]
    .iter()
    .any(|known| text.contains(known))
}

/// A resource name as Kubernetes spells one (`cpu`, `nvidia.com/gpu`,
/// `hugepages-2Mi`), or nothing.
fn resource_name(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_'));
    ok.then(|| s.to_string())
}

/// Pods of one revision the scheduler could not place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortage {
    pub revision: i64,
    /// Unschedulable pods of the revision, and its live pods.
    pub pods: i32,
    pub of: i32,
    pub cause: Cause,
    /// The nodes the cause is about (`classify`).
    pub nodes: Option<u32>,
    /// The rollout can make no other progress (module docs).
    pub stuck: bool,
    /// The earliest time one of them became unschedulable.
    pub pods_since: Option<Timestamp>,
}

/// The unschedulable pods of `revision` among a Deployment's own `pods`,
/// when there are any and the scheduler's reasons are all known.
/// `counts`: that Deployment's status.
pub fn shortage<'a>(
    pods: impl IntoIterator<Item = &'a WatchedPod>,
    revision: i64,
    counts: Counts,
) -> Option<Shortage> {
    let revision_label = revision.to_string();
    let mut terminating = false;
    let mut of = 0;
    let mut unschedulable = Vec::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            terminating = true;
            continue;
        }
        let of_revision = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::REVISION))
            == Some(&revision_label);
        if !of_revision {
            continue;
        }
        of += 1;
        if let Some(condition) = pod.unschedulable() {
            unschedulable.push(condition);
        }
    }
    let first = unschedulable.first()?;
    let (cause, nodes) = classify(first.message.as_deref().unwrap_or_default())?;
    let pods = i32::try_from(unschedulable.len()).unwrap_or(i32::MAX);
    let pods_since = unschedulable
        .iter()
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .min();
    Some(Shortage {
        revision,
        pods,
        of,
        cause,
        nodes,
        stuck: !terminating && counts.available.saturating_add(pods) >= counts.replicas,
        pods_since,
    })
}

impl Shortage {
    /// What status shows: `since` is carried over from the stored status
    /// while the same revision stays stuck for the same reason, so the grace
    /// is counted once.
    pub fn status(&self, stored: Option<&UnschedulableStatus>, now: &Time) -> UnschedulableStatus {
        let since = self.stuck.then(|| {
            stored
                .filter(|s| s.revision == self.revision && s.reason == self.cause.reason())
                .and_then(|s| s.since.clone())
                .unwrap_or_else(|| now.clone())
        });
        UnschedulableStatus {
            revision: self.revision,
            pods: self.pods,
            reason: self.cause.reason().to_string(),
            resources: match &self.cause {
                Cause::Insufficient(r) => r.clone(),
                Cause::NoMatchingNode => Vec::new(),
            },
            message: format!(
                "{}/{} pods of revision {} cannot be scheduled: {}",
                self.pods,
                self.of,
                self.revision,
                self.cause.explain(self.nodes)
            ),
            since,
        }
    }

    /// When the grace ends, once stuck: counted from the later of when the
    /// operator first saw it stuck and when the pods became unschedulable.
    pub fn grace_ends(&self, since: Option<&Time>, grace: Duration) -> Option<Timestamp> {
        let since = since?.0;
        let start = self.pods_since.map_or(since, |p| p.max(since));
        let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
        Some(start.checked_add(grace).unwrap_or(Timestamp::MAX))
    }

    /// The failure, once the grace has passed.
    pub fn failure(&self, since: Option<&Time>, grace: Duration, now: &Time) -> Option<Failure> {
        let ends = self.grace_ends(since, grace)?;
        (now.0 >= ends).then(|| Failure {
            reason: self.cause.reason(),
            message: format!(
                "{}/{} new pods unschedulable for {}s with nothing else to roll out: {}",
                self.pods,
                self.of,
                grace.as_secs(),
                self.cause.explain(self.nodes)
            ),
        })
    }
}

#[cfg(test)]
mod tests;
