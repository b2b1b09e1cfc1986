//! The reconcile pipeline: read → validate → build → apply → status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::apply::{Outcome, ensure};
use super::conditions::{self, DEGRADED};
use super::context::{Context, cached, of_instance};
use super::drift::Need;
use super::error::Error;
use super::status::{Observed, Revisions, derive};
use crate::api::{ModelDeployment, ModelDeploymentStatus, Phase, ServedVersion};
use crate::resources::{self, labels::MANAGER};
use crate::rollout::decide::{Change, Health, Inputs, decide};
use crate::rollout::health::{self, Failure};
use crate::rollout::history::{self, Described};
use crate::rollout::revision::{self, Revision};
use crate::rollout::{Progress, progress};
use crate::validate;

/// Setting this annotation to a new value retries a failed revision.
pub const RETRY_ANNOTATION: &str = "mlops.dev/retry";

/// A converged object is looked at again this often, from the cache only.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = md.namespace().ok_or(Error::NoNamespace)?;
    let name = md.name_any();
    tracing::debug!(namespace, name, "reconcile started");
    ctx.stores.wait_until_ready().await;

    let served = ServedVersion::requested(&md);
    let previous = Revisions::from_status(md.status.as_ref());
    let cached_deployment = cached(&ctx.stores.deployments, &namespace, &name);
    if let Err(cause) = validate::spec(&md.spec) {
        let observed = Observed {
            md: &md,
            served: &served,
            deployment: cached_deployment.as_deref(),
            invalid: Some(&cause),
            revisions: &previous,
        };
        let status = derive(&observed, &Time(Timestamp::now()));
        finish(
            &md,
            &namespace,
            md.status.as_ref(),
            status,
            md.resource_version(),
            &ctx,
        )
        .await?;
        tracing::info!(
            namespace,
            name,
            invalid = cause.as_str(),
            "reconciled: invalid spec"
        );
        return Ok(Action::await_change());
    }

    // Decide the rollout from what the cluster shows.
    let known = known_revisions(&md, &namespace, &ctx);
    let requested = ensure_revision(&md, &served, &known, &previous, &ctx).await?;
    let current = cached_deployment
        .as_deref()
        .and_then(resources::revision_of);
    let pods = of_instance(&ctx.stores.pods, &namespace, &name);
    let decision = decide(&Inputs {
        requested,
        previous_update: previous.requested,
        current,
        stable: previous.stable,
        history: &previous.history,
        paused: md.spec.paused,
        auto_rollback: md.spec.rollout.auto_rollback,
        retry_token: md.annotations().get(RETRY_ANNOTATION).map(String::as_str),
        health: health_of(current, cached_deployment.as_deref(), &pods),
    });
    let now = Time(Timestamp::now());
    let describe = |r: i64| describe_revision(r, requested, &served, &known);
    let history = history::apply(
        &previous.history,
        &decision.changes,
        describe,
        md.annotations().get(RETRY_ANNOTATION).map(String::as_str),
        &now,
    );
    let pinned: Vec<i64> = [Some(requested), Some(decision.target), decision.stable]
        .into_iter()
        .flatten()
        .collect();
    let limit = usize::try_from(md.spec.revision_history_limit)
        .unwrap_or(1)
        .max(1);
    let planned = Revisions {
        requested: Some(requested),
        current: Some(decision.target),
        stable: decision.stable,
        history: history::prune(history, limit, &pinned),
    };

    // Persist the decision before acting on it: a process killed in between
    // finds it in status and carries it out, instead of deciding afresh from
    // a half-changed cluster (and, say, retrying a version it just failed).
    let mut stored = md.status.clone();
    let mut version = md.resource_version();
    if planned != previous {
        let observed = Observed {
            md: &md,
            served: &served,
            deployment: cached_deployment.as_deref(),
            invalid: None,
            revisions: &planned,
        };
        let status = derive(&observed, &now);
        announce_transitions(&md, stored.as_ref(), &status, &ctx).await;
        version = write_status(&md, &namespace, &status, version, &ctx).await?;
        stored = Some(status);
        announce_changes(&md, &decision.changes, &planned, &ctx).await;
    }

    // Act: the Deployment runs the decided revision.
    let target_served = if decision.target == requested {
        served.clone()
    } else {
        known
            .iter()
            .find(|r| r.number == decision.target)
            .map(|r| r.served.clone())
            .ok_or(Error::MissingRevision {
                revision: decision.target,
            })?
    };
    let mut invalid = None;
    let mut deployment = cached_deployment;
    match apply_children(&md, &target_served, decision.target, &namespace, &ctx).await {
        Ok(applied) => deployment = applied.or(deployment),
        Err(Error::Rejected { kind, message }) => {
            invalid = Some(format!("the API server refused the {kind}: {message}"));
        }
        Err(e) => return Err(e),
    }
    let observed = Observed {
        md: &md,
        served: &served,
        deployment: deployment.as_deref(),
        invalid: invalid.as_deref(),
        revisions: &planned,
    };
    let status = derive(&observed, &Time(Timestamp::now()));
    let phase = status.phase.map(|p| p.to_string()).unwrap_or_default();
    finish(&md, &namespace, stored.as_ref(), status, version, &ctx).await?;
    prune_revisions(&md, &namespace, &known, &planned, &ctx).await?;
    tracing::info!(
        namespace,
        name,
        phase,
        revision = decision.target,
        requested,
        invalid = invalid.as_deref().unwrap_or(""),
        "reconciled"
    );
    Ok(match invalid {
        // Nothing changes until the user edits the spec, which wakes us.
        Some(_) => Action::await_change(),
        None => Action::requeue(RESYNC),
    })
}

/// Announces and writes `status` when it differs from what is stored.
async fn finish(
    md: &ModelDeployment,
    namespace: &str,
    stored: Option<&ModelDeploymentStatus>,
    status: ModelDeploymentStatus,
    version: Option<String>,
    ctx: &Context,
) -> Result<(), Error> {
    announce_transitions(md, stored, &status, ctx).await;
    if stored != Some(&status) {
        write_status(md, namespace, &status, version, ctx).await?;
    }
    Ok(())
}

/// The health of the revision the Deployment runs.
fn health_of(current: Option<i64>, deployment: Option<&Deployment>, pods: &[Arc<Pod>]) -> Health {
    let (Some(current), Some(deployment)) = (current, deployment) else {
        return Health::Rolling;
    };
    if let Some(failure) = health::judge(pods.iter().map(Arc::as_ref), current) {
        return Health::Failed(failure);
    }
    match progress(deployment) {
        Progress::Complete => Health::Complete,
        Progress::DeadlineExceeded { message } => Health::Failed(Failure {
            reason: "ProgressDeadlineExceeded",
            message,
        }),
        _ => Health::Rolling,
    }
}

fn describe_revision(
    revision: i64,
    requested: i64,
    served: &ServedVersion,
    known: &[Revision],
) -> Described {
    let of = |s: &ServedVersion| Described {
        model_version: s.model.version.clone(),
        image: s.server.image.clone(),
    };
    if revision == requested {
        return of(served);
    }
    known.iter().find(|r| r.number == revision).map_or(
        Described {
            model_version: String::new(),
            image: String::new(),
        },
        |r| of(&r.served),
    )
}

/// The revisions this ModelDeployment owns, from the cache.
fn known_revisions(md: &ModelDeployment, namespace: &str, ctx: &Context) -> Vec<Revision> {
    of_instance(&ctx.stores.revisions, namespace, &md.name_any())
        .iter()
        .filter(|cr| owned_by(cr.as_ref(), md))
        .filter_map(|cr| revision::parse(cr))
        .collect()
}

/// The spec's revision number, creating its snapshot when it is new.
async fn ensure_revision(
    md: &ModelDeployment,
    served: &ServedVersion,
    known: &[Revision],
    previous: &Revisions,
    ctx: &Context,
) -> Result<i64, Error> {
    let highest_recorded = previous
        .history
        .iter()
        .map(|e| e.revision)
        .chain(previous.requested)
        .max()
        .unwrap_or(0);
    let (number, is_new) = revision::resolve(known, served, highest_recorded);
    if !is_new {
        return Ok(number);
    }
    let namespace = md.namespace().ok_or(Error::NoNamespace)?;
    let api = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &namespace);
    match api
        .create(&PostParams::default(), &revision::build(md, number, served))
        .await
    {
        Ok(_) => Ok(number),
        // The cache lagged behind our own create, or another operator took
        // the number: only the former may use it.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&revision::name(&md.name_any(), number)).await?;
            match revision::parse(&existing) {
                Some(r) if r.hash == revision::served_hash(served) => Ok(number),
                _ => Err(Error::RevisionTaken { revision: number }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes snapshots of revisions the history no longer remembers.
async fn prune_revisions(
    md: &ModelDeployment,
    namespace: &str,
    known: &[Revision],
    planned: &Revisions,
    ctx: &Context,
) -> Result<(), Error> {
    let remembered =
        |n: i64| planned.history.iter().any(|e| e.revision == n) || planned.requested == Some(n);
    let api = Api::<ControllerRevision>::namespaced(ctx.client.clone(), namespace);
    for r in known.iter().filter(|r| !remembered(r.number)) {
        match api
            .delete(
                &revision::name(&md.name_any(), r.number),
                &DeleteParams::default(),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Events for rollouts starting; failures are announced by the Degraded
/// condition's transition, with the full story.
async fn announce_changes(
    md: &ModelDeployment,
    changes: &[Change],
    planned: &Revisions,
    ctx: &Context,
) {
    for change in changes {
        if let Change::Start { revision } = change {
            let entry = planned.history.iter().find(|e| e.revision == *revision);
            let note = entry.map_or_else(
                || format!("rolling out revision {revision}"),
                |e| {
                    format!(
                        "rolling out revision {revision} (model {}, image {})",
                        e.model_version, e.image
                    )
                },
            );
            publish(
                md,
                ctx,
                EventType::Normal,
                "RolloutStarted",
                "Rollout",
                note,
            )
            .await;
        }
    }
}

/// Applies the Deployment first: it is the child the API server is most
/// likely to refuse, and a refusal must leave everything else as it was.
/// Returns the Deployment as it now is, when it was looked at.
async fn apply_children(
    md: &ModelDeployment,
    served: &ServedVersion,
    revision: i64,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<Arc<Deployment>>, Error> {
    let name = md.name_any();
    let stores = &ctx.stores;
    let client = ctx.client.clone();

    let api = Api::<Deployment>::namespaced(client.clone(), namespace);
    let desired = resources::deployment(md, served, revision);
    let outcome = ensure(
        &api,
        "Deployment",
        desired,
        cached(&stores.deployments, namespace, &name),
    )
    .await?;
    report_apply(md, "Deployment", &outcome, ctx).await;
    let deployment = Some(outcome.object);
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
/// are removed. The resourceVersion makes it conditional: a write based on an
/// outdated object (a stale cache, or another operator got there first) is
/// refused with a conflict and retried from fresh state, so decisions never
/// overwrite each other. Returns the new resourceVersion.
async fn write_status(
    md: &ModelDeployment,
    namespace: &str,
    status: &ModelDeploymentStatus,
    version: Option<String>,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let api = Api::<ModelDeployment>::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"resourceVersion": version},
        "status": status,
    });
    let written = api
        .patch_status(
            &md.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.resource_version())
}
