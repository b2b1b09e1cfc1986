//! Observe: what one reconcile knows of its ModelDeployment, read once from
//! the caches. Every later step works from this snapshot, so the order of
//! effects never depends on when a cache is looked at.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::context::{Context, cached};
use super::error::Error;
use super::revisions::{health_of, known_revisions};
use super::status::Revisions;
use crate::api::{ModelDeployment, ServedVersion};
use crate::gates::Health;
use crate::resources;
use crate::resources::labels::RETRY_ANNOTATION;
use crate::rollout::revision::Revision;

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
    /// The revision in the Deployment's pod template.
    pub current: Option<i64>,
    /// How `current` is doing (its pods and the Deployment's progress).
    pub health: Health,
    /// Every revision snapshot this ModelDeployment owns.
    pub known: Vec<Revision>,
    /// The `mlops.dev/retry` annotation.
    pub retry_token: Option<String>,
    /// The one time this reconcile uses, to the second (the precision the
    /// API server stores), so that status derived twice in a pass is equal.
    pub now: Time,
}

impl Snapshot {
    pub fn observe(md: Arc<ModelDeployment>, ctx: &Context) -> Result<Self, Error> {
        let namespace = md.namespace().ok_or(Error::NoNamespace)?;
        let name = md.name_any();
        let deployment = cached(&ctx.stores.deployments, &namespace, &name);
        let current = deployment.as_deref().and_then(resources::revision_of);
        let pods = super::context::of_instance(&ctx.stores.pods, &namespace, &name);
        let health = health_of(current, deployment.as_deref(), &pods);
        let known = known_revisions(&md, &namespace, ctx);
        Ok(Self {
            served: ServedVersion::requested(&md),
            previous: Revisions::from_status(md.status.as_ref()),
            retry_token: md.annotations().get(RETRY_ANNOTATION).cloned(),
            now: now_to_the_second(),
            md,
            namespace,
            name,
            deployment,
            current,
            health,
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
            .map(|k| &k.served)
    }
}

fn now_to_the_second() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}
