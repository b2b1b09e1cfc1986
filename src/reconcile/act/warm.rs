//! `<name>-previous`, as the plan's warm rollback window says: applied,
//! released to the stable Deployment, or deleted.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::DeleteParams;

use super::apply::{Applied, ensure};
use super::optional::delete_ours;
use crate::error::Error;
use crate::reconcile::observe::Snapshot;
use crate::reconcile::plan::Plan;
use crate::reconcile::plan::warm::WarmChild;
use crate::resources;

pub async fn apply(
    seen: &Snapshot,
    plan: &Plan,
    api: &Api<Deployment>,
    platform: &resources::Platform,
) -> Result<Option<Applied<Deployment>>, Error> {
    let live = seen.warm_deployment.as_deref();
    match &plan.canary.warm {
        WarmChild::Leave => Ok(None),
        WarmChild::Release | WarmChild::Delete => {
            let how = match plan.canary.warm {
                WarmChild::Release => DeleteParams::orphan(),
                _ => DeleteParams::background(),
            };
            if let Some(live) = live {
                delete_ours(api, live, how).await?;
            }
            Ok(None)
        }
        WarmChild::Run {
            revision,
            served,
            replicas,
            paused,
        } => {
            // One revision per Deployment (its selector): one keeping
            // another revision goes, with its pods, and the next pass
            // creates this one.
            if let Some(live) =
                live.filter(|live| resources::selected_revision(live) != Some(*revision))
            {
                delete_ours(api, live, DeleteParams::background()).await?;
                return Ok(None);
            }
            let mut desired =
                resources::warm_deployment(&seen.md, served, *revision, *replicas, platform);
            if let Some(spec) = desired.spec.as_mut() {
                spec.paused = Some(*paused);
            }
            ensure(api, "Deployment", desired, seen.warm_deployment.clone())
                .await
                .map(Some)
        }
    }
}
