//! Observe: what one reconcile knows of its ModelDeployment, read once from
//! the caches. Every later step works from this snapshot, so the order of
//! effects never depends on when a cache is looked at.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::context::Context;
use crate::alerts::outbox::Confirmed;
use crate::api::{ModelDeployment, Outcome, ServedVersion, UnschedulableStatus};
use crate::cache::children::decoded;
use crate::cache::{cached, of_instance};
use crate::error::Error;
use crate::gates::{Failure, Health};
use crate::reasons;
use crate::resources::labels::{ABORT_ANNOTATION, PROMOTE_ANNOTATION, RETRY_ANNOTATION};
use crate::resources::{self, owned_by};
use crate::rollout::canary::{Attempt, Promotion};
use crate::rollout::history::previous_stable;
use crate::rollout::pod::WatchedPod;
use crate::rollout::revision::{self, Revision};
use crate::rollout::{Counts, Progress, capacity, health, progress, refused};
use crate::status::Revisions;

/// One reconcile's view of a ModelDeployment and what it owns.
pub struct Snapshot {
    pub md: Arc<ModelDeployment>,
    pub namespace: String,
    pub name: String,
    /// What the spec asks to run.
    pub served: ServedVersion,
    /// The revision bookkeeping as the stored status has it.
    pub previous: Revisions,
    pub deployment: Option<Arc<Deployment>>,
    /// The canary Deployment (`<name>-canary`), when this ModelDeployment
    /// owns one.
    pub canary_deployment: Option<Arc<Deployment>>,
    /// Pods of the stable Deployment's template revision, whoever owns
    /// them (a promotion hands the canary's to it).
    pub template_pods: usize,
    /// Pods of the model that exist, of any revision, terminating ones
    /// included (they still hold their node's resources).
    pub model_pods: usize,
    /// Live (not terminating) pods of the model, by revision.
    pub live_pods: BTreeMap<i64, usize>,
    /// `<name>-previous`, keeping the previous revision's pods warm after
    /// a promotion (`warmRollbackWindow`), when this ModelDeployment owns
    /// one.
    pub warm_deployment: Option<Arc<Deployment>>,
    /// The revision being rolled out: the canary's while a canary of a
    /// revision still rolling out exists, else the one in the Deployment's
    /// pod template.
    pub current: Option<i64>,
    /// The revision in the (stable) Deployment's pod template.
    pub stable_running: Option<i64>,
    /// `current` runs as the canary.
    pub canary_is_current: bool,
    /// How `current` is doing (its pods and the Deployment's progress).
    pub health: Health,
    /// Pods of `current` without a node, while `current` has not failed.
    pub unschedulable: Option<UnschedulableStatus>,
    /// Every revision this ModelDeployment owns, by number and hash; the
    /// snapshots of those this pass needs are read after observing
    /// (`revisions::read_snapshots`).
    pub known: Vec<Revision>,
    /// The `mlops.dev/retry` annotation.
    pub retry_token: Option<String>,
    /// The `mlops.dev/promote` annotation, parsed.
    pub promotion: Option<Promotion>,
    /// The `mlops.dev/abort` annotation: the canary to abort.
    pub abort: Option<Attempt>,
    /// Alert deliveries a channel confirmed that status does not show yet.
    pub confirmed: Vec<Confirmed>,
    /// The one time this reconcile uses, to the second (the precision the
    /// API server stores), so that status derived twice in a pass is equal.
    pub now: Time,
}

impl Snapshot {
    pub fn observe(md: Arc<ModelDeployment>, ctx: &Context) -> Result<Self, Error> {
        let namespace = md.namespace().ok_or(Error::NoNamespace)?;
        let name = md.name_any();
        let deployment = decoded(cached(&ctx.stores.deployments, &namespace, &name))?;
        let canary_deployment = decoded(cached(
            &ctx.stores.deployments,
            &namespace,
            &resources::canary_name(&name),
        ))?
        .filter(|d| owned_by(d.as_ref(), &md));
        let warm_deployment = decoded(cached(
            &ctx.stores.deployments,
            &namespace,
            &resources::warm_name(&name),
        ))?
        .filter(|d| owned_by(d.as_ref(), &md));
        let previous = Revisions::from_status(md.status.as_ref());
        let stable_running = deployment.as_deref().and_then(resources::revision_of);
        let canary_revision = canary_deployment
            .as_deref()
            .and_then(resources::revision_of);
        // A canary runs what rolls out; and a promoted one, while it still
        // fills up before its pods are handed to the stable Deployment,
        // what is Stable.
        let canary_running = canary_revision.filter(|c| {
            Some(*c) != stable_running
                && (still_rolling_out(&previous, *c) || previous.stable == Some(*c))
        });
        let current = canary_running.or(stable_running);
        let pods = crate::cache::of_instance(&ctx.stores.pods, &namespace, &name);
        let template_pods = stable_running.map_or(0, |c| {
            let c = c.to_string();
            pods.iter()
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(resources::labels::REVISION))
                        == Some(&c)
                })
                .count()
        });
        let model_pods = pods.len();
        let mut live_pods = BTreeMap::new();
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let revision = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(resources::labels::REVISION))
                .and_then(|r| r.parse::<i64>().ok());
            if let Some(revision) = revision {
                *live_pods.entry(revision).or_default() += 1;
            }
        }
        let running = match canary_running {
            Some(_) => canary_deployment.as_deref(),
            None => deployment.as_deref(),
        };
        let now = now_to_the_second();
        let grace = Duration::from_secs(
            u64::try_from(md.spec.rollout.capacity_grace_seconds).unwrap_or_default(),
        );
        let (health, unschedulable) = health_of(
            current,
            running,
            &pods,
            Capacity {
                stored: previous.unschedulable.as_ref(),
                grace,
                now: &now,
            },
        );
        let known = known_revisions(&md, &namespace, ctx);
        let annotations = md.annotations();
        Ok(Self {
            promotion: annotations
                .get(PROMOTE_ANNOTATION)
                .and_then(|v| Promotion::parse(v)),
            abort: annotations
                .get(ABORT_ANNOTATION)
                .and_then(|v| Attempt::parse(v)),
            canary_deployment,
            template_pods,
            model_pods,
            live_pods,
            warm_deployment,
            stable_running,
            canary_is_current: canary_running.is_some(),
            served: ServedVersion::requested(&md),
            previous,
            retry_token: md
                .annotations()
                .get(RETRY_ANNOTATION)
                .map(|t| bounded_token(t)),
            confirmed: ctx.outbound.deliverer.confirmed(&namespace, &name),
            now,
            md,
            namespace,
            name,
            deployment,
            current,
            health,
            unschedulable,
            known,
        })
    }

    /// The served version of revision `number`, from the spec or its
    /// snapshot.
    pub fn served_of(&self, number: i64, requested: i64) -> Option<&ServedVersion> {
        if number == requested {
            return Some(&self.served);
        }
        self.known
            .iter()
            .find(|k| k.number == number)
            .and_then(|k| k.served.as_ref())
    }

    /// The revisions whose snapshots a pass may need besides the spec's:
    /// every revision a decision can target or a canary can run (the stable
    /// one, the one running, the canary's, and the Stable one before the
    /// running one, which a post-promotion breach reinstates), never the
    /// whole history.
    pub fn needed_revisions(&self) -> Vec<i64> {
        let canary = self
            .canary_deployment
            .as_deref()
            .and_then(resources::revision_of);
        let before = |r: Option<i64>| r.and_then(|r| previous_stable(&self.previous.history, r));
        let mut needed: Vec<i64> = [
            self.previous.stable,
            self.previous.current,
            self.previous.requested,
            self.current,
            self.stable_running,
            canary,
            before(self.current),
            before(self.previous.stable),
        ]
        .into_iter()
        .flatten()
        .collect();
        needed.sort_unstable();
        needed.dedup();
        needed
    }
}

/// What judging capacity needs besides the pods: the grace's start as
/// status stored it, the grace, and this pass's time.
struct Capacity<'a> {
    stored: Option<&'a UnschedulableStatus>,
    grace: Duration,
    now: &'a Time,
}

/// The health of the revision the Deployment runs, and its pods the
/// scheduler cannot place while it has not failed.
fn health_of(
    current: Option<i64>,
    deployment: Option<&Deployment>,
    pods: &[Arc<WatchedPod>],
    capacity: Capacity<'_>,
) -> (Health, Option<UnschedulableStatus>) {
    let (Some(current), Some(deployment)) = (current, deployment) else {
        return (Health::Rolling, None);
    };
    // Only the Deployment's own pods: a stray pod with the model's labels
    // must not fail (or pass) a rollout.
    let name = deployment.name_any();
    let own: Vec<&WatchedPod> = pods
        .iter()
        .map(Arc::as_ref)
        .filter(|p| health::owned_by_deployment(p, &name))
        .collect();
    if let Some(failure) = health::failure_of(own.iter().copied(), current) {
        return (Health::Failed(failure), None);
    }
    // Pods the API server refuses to create: before the deadline, which
    // they would only reach minutes later.
    if let Some(failure) = refused::failure_of(deployment, own.iter().copied(), current) {
        return (Health::Failed(failure), None);
    }
    let progress = progress(deployment);
    // Judged only once the Deployment controller has acted on the
    // template: its counts are the "nothing else moves" half of the
    // verdict.
    let shortage = match progress {
        Progress::NotObserved => None,
        _ => capacity::shortage(own.iter().copied(), current, Counts::of(deployment)),
    };
    let unschedulable = shortage
        .as_ref()
        .map(|s| (s, s.status(capacity.stored, capacity.now)));
    if let Some((shortage, status)) = &unschedulable
        && let Some(failure) = shortage.failure(status.since.as_ref(), capacity.grace, capacity.now)
    {
        return (Health::Failed(failure), None);
    }
    let unschedulable = unschedulable.map(|(_, status)| status);
    let health = match progress {
        Progress::Complete => Health::Complete,
        Progress::DeadlineExceeded { message } => Health::Failed(Failure {
            reason: reasons::PROGRESS_DEADLINE_EXCEEDED,
            message,
        }),
        _ => Health::Rolling,
    };
    (health, unschedulable)
}

/// The revisions this ModelDeployment owns, from the cache's metadata.
fn known_revisions(md: &ModelDeployment, namespace: &str, ctx: &Context) -> Vec<Revision> {
    let name = md.name_any();
    of_instance(&ctx.stores.revisions, namespace, &name)
        .iter()
        .filter(|cr| owned_by(cr.as_ref(), md))
        .filter_map(|cr| revision::identify(&cr.metadata, &name))
        .collect()
}

/// A canary Deployment's revision is the one rolling out only while its
/// rollout has not ended: an aborted canary left at 0 pods, or a promoted
/// one waiting for the stable Deployment, is no longer judged.
fn still_rolling_out(previous: &Revisions, revision: i64) -> bool {
    previous
        .history
        .iter()
        .find(|e| e.revision == revision)
        .is_none_or(|e| e.outcome == Outcome::Progressing)
}

/// The retry annotation as status keeps it: as is up to 63 characters
/// (`kubectl model retry` writes a timestamp), else a hash of it, so that a
/// long annotation cannot grow every history entry (docs/security.md,
/// "Bounded status"). Equal annotations still give equal tokens.
fn bounded_token(token: &str) -> String {
    const KEPT: usize = 63;
    if token.len() <= KEPT {
        return token.to_string();
    }
    match crate::digest::json_sha256_hex(&token, 8) {
        Ok(hash) => format!("sha256:{hash}"),
        Err(_) => token.chars().take(KEPT).collect(),
    }
}

fn now_to_the_second() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::bounded_token;

    #[test]
    fn retry_tokens_are_bounded_and_still_tell_retries_apart() {
        assert_eq!(bounded_token("1764201600"), "1764201600");
        let long = "x".repeat(200_000);
        let other = format!("{}y", "x".repeat(199_999));
        assert!(bounded_token(&long).len() <= 63);
        assert_eq!(bounded_token(&long), bounded_token(&long));
        assert_ne!(bounded_token(&long), bounded_token(&other));
    }
}
