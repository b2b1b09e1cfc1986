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
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::analysis::{Running, Subject, analyse};
use super::apply::ensure;
use super::context::{Context, cached, of_instance};
use super::error::Error;
use super::events::{announce_changes, announce_transitions, publish, report_apply};
use super::revisions::{
    describe_revision, ensure_revision, health_of, known_revisions, prune_revisions,
};
use super::status::{Observed, Revisions, derive};
use crate::alerts::{self, deliver::Target};
use crate::api::{ModelDeployment, ModelDeploymentStatus, ServedVersion};
use crate::metrics::RevisionLabels;
use crate::resources::{self, labels::MANAGER};
use crate::rollout::decide::{Change, Inputs, decide};
use crate::rollout::history;
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
    let health = health_of(current, cached_deployment.as_deref(), &pods);
    let now = Time(Timestamp::now());
    let retry_token = md.annotations().get(RETRY_ANNOTATION).map(String::as_str);

    // Measure the running revision's metrics when a round is due.
    let served_of = |r: i64| -> Option<ServedVersion> {
        if r == requested {
            return Some(served.clone());
        }
        known
            .iter()
            .find(|k| k.number == r)
            .map(|k| k.served.clone())
    };
    let version_of = |r: i64| served_of(r).map(|s| s.model.version);
    let running = current.and_then(served_of);
    let analysed = analyse(
        md.spec.rollout.analysis.as_ref(),
        &Subject {
            namespace: &namespace,
            name: &name,
            paused: md.spec.paused,
            retry_token,
            previous: &previous,
            version_of: &version_of,
        },
        current.zip(running.as_ref()).map(|(revision, s)| Running {
            revision,
            model: s.model_name(),
            version: &s.model.version,
            health: &health,
        }),
        &ctx,
        &now,
    )
    .await;

    let decision = decide(&Inputs {
        requested,
        previous_update: previous.requested,
        current,
        stable: previous.stable,
        history: &previous.history,
        paused: md.spec.paused,
        auto_rollback: md.spec.rollout.auto_rollback,
        retry_token,
        health,
        analysis: analysed.gate.clone(),
        breach: analysed.breach.clone(),
    });
    let describe = |r: i64| describe_revision(r, requested, &served, &known);
    let mut history = history::apply(
        &previous.history,
        &decision.changes,
        describe,
        retry_token,
        &now,
    );
    history::record_checks(&mut history, &decision.changes, analysed.status.as_ref());
    let pinned: Vec<i64> = [Some(requested), Some(decision.target), decision.stable]
        .into_iter()
        .flatten()
        .collect();
    let limit = usize::try_from(md.spec.revision_history_limit)
        .unwrap_or(1)
        .max(1);
    let mut planned = Revisions {
        requested: Some(requested),
        current: Some(decision.target),
        stable: decision.stable,
        history: history::prune(history, limit, &pinned),
        analysis: analysed.status.clone(),
        alerts: Vec::new(),
    };
    let alert_changes = raise_alerts(&md, &previous, &planned, &now);
    planned.alerts = alert_changes.next.clone();

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
        // Announced only once written: a refused write is retried, and its
        // events must not repeat with every attempt.
        version = write_status(&md, &namespace, &status, version, &ctx).await?;
        announce_transitions(&md, stored.as_ref(), &status, &ctx).await;
        stored = Some(status);
        announce_changes(&md, &decision.changes, &planned, &ctx).await;
        count_outcomes(&decision.changes, &ctx);
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
    deliver_alerts(&md, &namespace, &served, &alert_changes, &ctx);
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
        None => Action::requeue(analysed.next_round.map_or(RESYNC, |next| next.min(RESYNC))),
    })
}

/// The alerts the planned state raises, against those already raised.
fn raise_alerts(
    md: &ModelDeployment,
    previous: &Revisions,
    planned: &Revisions,
    now: &Time,
) -> alerts::Transition {
    let failure_limit = md
        .spec
        .rollout
        .analysis
        .as_ref()
        .map_or(0, |a| a.failure_limit);
    let raised = alerts::desired(&alerts::desired::State {
        requested: planned.requested,
        current: planned.current,
        history: &planned.history,
        analysis: planned.analysis.as_ref(),
        failure_limit,
    });
    alerts::transition(&previous.alerts, raised, now)
}

/// Hands the alerts that changed (and those due a refresh) to the delivery
/// tasks; Events were already sent by the Degraded condition's transition.
fn deliver_alerts(
    md: &ModelDeployment,
    namespace: &str,
    served: &ServedVersion,
    changes: &alerts::Transition,
    ctx: &Context,
) {
    let Some(channels) = md.spec.alerts.as_ref() else {
        return;
    };
    if channels.alertmanager.is_none() && channels.webhook.is_none() {
        return;
    }
    let target = Target {
        namespace: namespace.to_string(),
        name: md.name_any(),
        model: served.model_name().to_string(),
        alertmanager: channels.alertmanager.as_ref().map(|a| a.url.clone()),
        webhook: channels.webhook.as_ref().map(|w| w.url_secret_ref.clone()),
    };
    ctx.outbound.deliverer.deliver(&target, changes);
}

/// Counts revisions whose rollout ended, for `/metrics`.
fn count_outcomes(changes: &[Change], ctx: &Context) {
    for change in changes {
        let (outcome, reason) = match change {
            Change::Succeed { .. } => ("Stable", "RolloutComplete"),
            Change::Fail {
                replaced_by: Some(_),
                failure,
                ..
            } => ("RolledBack", failure.reason),
            Change::Fail {
                replaced_by: None,
                failure,
                ..
            } => ("Failed", failure.reason),
            Change::Start { .. } | Change::Supersede { .. } | Change::Reinstate { .. } => continue,
        };
        let labels = RevisionLabels {
            outcome: outcome.into(),
            reason: reason.into(),
        };
        ctx.metrics.revision_outcomes.get_or_create(&labels).inc();
    }
}

/// Writes `status` when it differs from what is stored, then announces
/// what changed (after the write, so a refused write repeats no event).
async fn finish(
    md: &ModelDeployment,
    namespace: &str,
    stored: Option<&ModelDeploymentStatus>,
    status: ModelDeploymentStatus,
    version: Option<String>,
    ctx: &Context,
) -> Result<(), Error> {
    if stored != Some(&status) {
        write_status(md, namespace, &status, version, ctx).await?;
    }
    ctx.metrics
        .record_state(namespace, &md.name_any(), stored, &status);
    announce_transitions(md, stored, &status, ctx).await;
    Ok(())
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

pub(super) fn owned_by<K: Resource>(child: &K, md: &ModelDeployment) -> bool {
    let uid = md.meta().uid.as_deref();
    child
        .owner_references()
        .iter()
        .any(|r| Some(r.uid.as_str()) == uid && r.controller == Some(true))
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
