//! The reconcile pipeline: read → validate → build → apply → status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::apply::{Outcome, ensure};
use super::conditions::{self, DEGRADED};
use super::context::{Context, cached};
use super::drift::Need;
use super::error::Error;
use super::status::{Observed, derive};
use crate::api::{ModelDeployment, ModelDeploymentStatus, Phase, ServedVersion};
use crate::resources::{self, labels::MANAGER};
use crate::validate;

/// A converged object is looked at again this often, from the cache only.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = md.namespace().ok_or(Error::NoNamespace)?;
    let name = md.name_any();
    tracing::debug!(namespace, name, "reconcile started");
    ctx.stores.wait_until_ready().await;
    tracing::debug!(namespace, name, "caches ready");

    let served = ServedVersion::requested(&md);
    let mut invalid = validate::spec(&md.spec).err();
    let mut deployment = cached(&ctx.stores.deployments, &namespace, &name);
    if invalid.is_none() {
        match apply_children(&md, &served, &namespace, &ctx).await {
            Ok(applied) => deployment = applied.or(deployment),
            Err(Error::Rejected { kind, message }) => {
                invalid = Some(format!("the API server refused the {kind}: {message}"));
            }
            Err(e) => return Err(e),
        }
    }

    let observed = Observed {
        md: &md,
        served: &served,
        deployment: deployment.as_deref(),
        invalid: invalid.as_deref(),
    };
    let status = derive(&observed, &Time(Timestamp::now()));
    announce_transitions(&md, md.status.as_ref(), &status, &ctx).await;
    if md.status.as_ref() != Some(&status) {
        write_status(&md, &namespace, &status, &ctx).await?;
    }
    tracing::info!(
        namespace,
        name,
        phase = %status.phase.map(|p| p.to_string()).unwrap_or_default(),
        invalid = invalid.as_deref().unwrap_or(""),
        "reconciled"
    );
    Ok(match invalid {
        // Nothing changes until the user edits the spec, which wakes us.
        Some(_) => Action::await_change(),
        None => Action::requeue(RESYNC),
    })
}

/// Applies the Deployment first: it is the child the API server is most
/// likely to refuse, and a refusal must leave everything else as it was.
/// Returns the Deployment as it now is, when it was looked at.
async fn apply_children(
    md: &ModelDeployment,
    served: &ServedVersion,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<Arc<Deployment>>, Error> {
    let name = md.name_any();
    let stores = &ctx.stores;
    let client = ctx.client.clone();
    let cached_deployment = cached(&stores.deployments, namespace, &name);

    // Paused holds the Deployment exactly as it runs; only a missing one is
    // created, so pausing a brand-new object still serves something.
    let deployment = if md.spec.paused && cached_deployment.is_some() {
        cached_deployment
    } else {
        let api = Api::<Deployment>::namespaced(client.clone(), namespace);
        let desired = resources::deployment(md, served);
        let outcome = ensure(&api, "Deployment", desired, cached_deployment).await?;
        report_apply(md, "Deployment", &outcome, ctx).await;
        Some(outcome.object)
    };

    let api = Api::<Service>::namespaced(client.clone(), namespace);
    let desired = resources::service(md, served.model_name());
    let outcome = ensure(
        &api,
        "Service",
        desired,
        cached(&stores.services, namespace, &name),
    )
    .await?;
    report_apply(md, "Service", &outcome, ctx).await;

    let api = Api::<HorizontalPodAutoscaler>::namespaced(client, namespace);
    let cached_hpa = cached(&stores.hpas, namespace, &name);
    match resources::hpa(md, served.model_name()) {
        Some(desired) => {
            let outcome = ensure(&api, "HorizontalPodAutoscaler", desired, cached_hpa).await?;
            report_apply(md, "HorizontalPodAutoscaler", &outcome, ctx).await;
        }
        None => {
            if let Some(hpa) = cached_hpa.filter(|h| owned_by(h.as_ref(), md)) {
                delete_hpa(&api, &hpa.name_any()).await?;
                publish(
                    md,
                    ctx,
                    EventType::Normal,
                    "Deleted",
                    "Delete",
                    "deleted the HorizontalPodAutoscaler: autoscaling was turned off".into(),
                )
                .await;
            }
        }
    }
    Ok(deployment)
}

async fn delete_hpa(api: &Api<HorizontalPodAutoscaler>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn owned_by<K: Resource>(child: &K, md: &ModelDeployment) -> bool {
    let uid = md.meta().uid.as_deref();
    child
        .owner_references()
        .iter()
        .any(|r| Some(r.uid.as_str()) == uid && r.controller == Some(true))
}

async fn report_apply<K>(md: &ModelDeployment, kind: &str, outcome: &Outcome<K>, ctx: &Context) {
    let (reason, note) = match outcome.need {
        Need::Nothing => return,
        Need::Create => ("Created", format!("created {kind} {}", md.name_any())),
        Need::Update => (
            "Updated",
            format!("updated {kind} {} to match the spec", md.name_any()),
        ),
        Need::RestoreDrift => (
            "DriftCorrected",
            format!(
                "restored {kind} {}: fields the operator manages had been changed by hand",
                md.name_any()
            ),
        ),
    };
    publish(md, ctx, EventType::Normal, reason, "Apply", note).await;
}

/// Events for status changes a person should see in `kubectl describe`.
/// Sent on transitions only, so a resync never repeats them.
async fn announce_transitions(
    md: &ModelDeployment,
    old: Option<&ModelDeploymentStatus>,
    new: &ModelDeploymentStatus,
    ctx: &Context,
) {
    let degraded = |s: Option<&ModelDeploymentStatus>| {
        s.and_then(|s| conditions::find(&s.conditions, DEGRADED))
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let now_degraded = degraded(Some(new));
    if let Some((reason, message)) = now_degraded.clone()
        && degraded(old) != now_degraded
    {
        publish(md, ctx, EventType::Warning, &reason, "Reconcile", message).await;
    }
    let became_healthy =
        new.phase == Some(Phase::Healthy) && old.and_then(|s| s.phase) != Some(Phase::Healthy);
    if became_healthy {
        let note = format!(
            "model {} {} serves on {} pods",
            new.model.as_deref().unwrap_or_default(),
            md.spec.model.version,
            new.available_replicas
        );
        publish(
            md,
            ctx,
            EventType::Normal,
            "RolloutComplete",
            "Rollout",
            note,
        )
        .await;
    }
}

/// Events are best effort: a failure to record one never fails a reconcile.
async fn publish(
    md: &ModelDeployment,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &md.object_ref(&())).await {
        tracing::warn!(name = %md.name_any(), error = %e, "could not record event");
    }
}

/// Server-side apply of the whole status: fields the new status leaves out
/// are removed, and no resourceVersion is needed.
async fn write_status(
    md: &ModelDeployment,
    namespace: &str,
    status: &ModelDeploymentStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let api = Api::<ModelDeployment>::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "status": status,
    });
    api.patch_status(
        &md.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
