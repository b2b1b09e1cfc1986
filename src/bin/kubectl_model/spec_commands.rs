//! `kubectl model rollback`, `pause` and `resume`: the commands that write a
//! ModelDeployment's spec. Under GitOps (Argo CD, Flux) the spec is Git's,
//! and the next sync sets a hand-written field back wherever Git states it,
//! so each command says so, and with `--print-patch` prints the change to
//! make in Git instead of writing it.

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use model_operator::api::{ModelDeployment, ModelDeploymentStatus, Outcome};
use model_operator::resources::owned_by;
use model_operator::rollout::revision;
use serde_json::{Value, json};

use super::explain;

/// Sets the spec's served version back to a revision's snapshot.
pub async fn rollback(
    client: &Client,
    namespace: &str,
    name: &str,
    to_revision: Option<i64>,
    print_patch: bool,
) -> Result<(), String> {
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), namespace);
    let explain = |e: kube::Error, name: &str| explain(e, name, namespace);
    let md = mds.get(name).await.map_err(|e| explain(e, name))?;
    let status = md.status.clone().unwrap_or_default();
    let target = to_revision
        .or_else(|| default_rollback_target(&status))
        .ok_or_else(|| {
            format!("{name} has no stable revision to go back to; name one with --to-revision")
        })?;
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), namespace);
    let cr = revisions
        .get(&revision::name(name, target))
        .await
        .map_err(|e| explain(e, &revision::name(name, target)))?;
    // Anyone who may create objects in the namespace can name one
    // `<name>-r<N>`: only a revision this ModelDeployment owns is trusted.
    if !owned_by(&cr, &md) {
        return Err(format!(
            "{} is not a revision of {name}: it lacks {name}'s controller owner reference, so it is not used",
            revision::name(name, target)
        ));
    }
    let served = revision::parse(&cr)
        .and_then(|r| r.served)
        .ok_or_else(|| format!("revision {target} of {name} is damaged"))?;
    let described = format!(
        "model {}, image {}",
        served.model.version, served.server.image
    );
    let current = serde_json::to_value(&md.spec).map_err(|e| e.to_string())?;
    let target_spec = json!({
        "model": served.model,
        "server": served.server,
        "podMetadata": served.pod_metadata,
    });
    let mut fields = serde_json::Map::new();
    for field in ["model", "server", "podMetadata"] {
        fields.insert(
            field.into(),
            merge_patch_to(&current[field], &target_spec[field]),
        );
    }
    let patch = json!({"spec": fields});
    if print_patch {
        return print_for_git(name, &patch, &format!("revision {target} ({described})"));
    }
    mds.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| explain(e, name))?;
    sayln!("{name}: spec set back to revision {target} ({described}).");
    // Said whether or not the object looks managed: a rollback that Git
    // undoes rolls the failed version out again, the worst surprise here.
    warnln!(
        "warning: if {name} is managed with GitOps (Argo CD, Flux), the next sync sets Git's spec \
         back and the rolled-back version rolls out again. Make the same change in Git: \
         `kubectl model rollback {name} --to-revision {target} --print-patch` prints it \
         (docs/gitops.md)."
    );
    Ok(())
}

pub async fn set_paused(
    mds: &Api<ModelDeployment>,
    name: &str,
    paused: bool,
    print_patch: bool,
    explain: impl Fn(kube::Error, &str) -> String,
) -> Result<(), String> {
    let patch = json!({"spec": {"paused": paused}});
    let verb = if paused { "pause" } else { "resume" };
    if print_patch {
        // Read, never written: a name that does not exist is still an error.
        mds.get(name).await.map_err(|e| explain(e, name))?;
        return print_for_git(name, &patch, &format!("spec.paused: {paused}"));
    }
    let md = mds
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| explain(e, name))?;
    sayln!("{name}: {}", if paused { "paused" } else { "resumed" });
    if let Some(how) = gitops_tracking(&md) {
        warnln!(
            "warning: {name} is managed by {how}. Its sync sets spec.paused back to Git's value \
             only where Git states it: commit `paused: {paused}` to Git \
             (`kubectl model {verb} {name} --print-patch` prints the change), or the next sync \
             undoes this if Git says otherwise, and nothing undoes it if Git is silent \
             (docs/gitops.md)."
        );
    }
    Ok(())
}

/// The patch on stdout as YAML, alone, so it can be saved or piped; what it
/// is and how to use it on stderr.
fn print_for_git(name: &str, patch: &Value, what: &str) -> Result<(), String> {
    let yaml = serde_yaml::to_string(patch).map_err(|e| format!("cannot print the patch: {e}"))?;
    say!("{yaml}");
    warnln!(
        "# Not written to the cluster. {name} with {what}, as a JSON merge patch of its manifest \
         (null removes a field): make this change in Git, or apply it by hand with \
         `kubectl patch mdep {name} --type merge --patch-file FILE`."
    );
    Ok(())
}

/// Who manages the object, when it seems to be a GitOps tool: Argo CD's
/// tracking annotation (its default since 3.0) or the label its label
/// tracking sets, or the labels Flux's kustomize and helm controllers set.
fn gitops_tracking(md: &ModelDeployment) -> Option<&'static str> {
    let annotations = md.metadata.annotations.as_ref();
    let labels = md.metadata.labels.as_ref();
    let has_label = |key: &str| labels.is_some_and(|l| l.contains_key(key));
    if annotations.is_some_and(|a| a.contains_key("argocd.argoproj.io/tracking-id")) {
        return Some("Argo CD (annotation argocd.argoproj.io/tracking-id)");
    }
    if has_label("kustomize.toolkit.fluxcd.io/name") {
        return Some("Flux (label kustomize.toolkit.fluxcd.io/name)");
    }
    if has_label("helm.toolkit.fluxcd.io/name") {
        return Some("Flux (label helm.toolkit.fluxcd.io/name)");
    }
    has_label("app.kubernetes.io/instance").then_some(
        "Argo CD (label app.kubernetes.io/instance, as Argo CD's label tracking sets it)",
    )
}

/// A JSON merge patch turning `current` into `target`: what `target` lacks is
/// set to null, so fields added since that revision are removed too.
fn merge_patch_to(current: &Value, target: &Value) -> Value {
    match (current, target) {
        (Value::Object(c), Value::Object(t)) => {
            let mut patch = serde_json::Map::new();
            for (k, v) in t {
                patch.insert(
                    k.clone(),
                    merge_patch_to(c.get(k).unwrap_or(&Value::Null), v),
                );
            }
            for k in c.keys().filter(|k| !t.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        (_, t) => t.clone(),
    }
}

/// The stable revision when the spec asks for something else, else the
/// newest earlier revision that was stable.
fn default_rollback_target(status: &ModelDeploymentStatus) -> Option<i64> {
    if let Some(stable) = status
        .stable_revision
        .filter(|s| Some(*s) != status.update_revision)
    {
        return Some(stable);
    }
    let current = status.update_revision.unwrap_or(i64::MAX);
    status
        .history
        .iter()
        .rev()
        .filter(|e| e.revision < current)
        .find(|e| matches!(e.outcome, Outcome::Stable | Outcome::Superseded))
        .map(|e| e.revision)
}
