//! `kubectl model promote` and `abort`, and the canary's step plan in
//! `kubectl model status`. Both commands write an annotation naming the
//! canary they act on (docs/canary.md); the operator does the rest.

use kube::Api;
use kube::api::{Patch, PatchParams};
use model_operator::api::{CanaryStatus, ModelDeployment};
use model_operator::resources::labels::{ABORT_ANNOTATION, PROMOTE_ANNOTATION};
use model_operator::rollout::canary::{self, Attempt, Promotion};
use serde_json::json;

/// Ends the canary's current step, or with `full` every remaining step.
pub async fn promote(
    mds: &Api<ModelDeployment>,
    name: &str,
    full: bool,
    explain: impl Fn(kube::Error, &str) -> String,
) -> Result<(), String> {
    let md = mds.get(name).await.map_err(|e| explain(e, name))?;
    let canary = running_canary(&md)?;
    let attempt = Attempt::of(&canary);
    let promotion = match full {
        true => Promotion::Full { canary: attempt },
        false => Promotion::Step {
            canary: attempt,
            index: canary.step_index,
        },
    };
    annotate(mds, name, PROMOTE_ANNOTATION, &promotion.value(), explain).await?;
    let what = match full {
        true => "every remaining step skipped".to_string(),
        false => format!("step {}/{} ends", canary.step_index + 1, canary.steps),
    };
    sayln!("{name}: revision {} promoted: {what}.", canary.revision);
    Ok(())
}

/// Rolls the running canary back.
pub async fn abort(
    mds: &Api<ModelDeployment>,
    name: &str,
    explain: impl Fn(kube::Error, &str) -> String,
) -> Result<(), String> {
    let md = mds.get(name).await.map_err(|e| explain(e, name))?;
    let canary = running_canary(&md)?;
    let value = Attempt::of(&canary).value();
    annotate(mds, name, ABORT_ANNOTATION, &value, explain).await?;
    sayln!(
        "{name}: canary of revision {} aborted; the stable revision takes all traffic.",
        canary.revision
    );
    Ok(())
}

/// The canary rolling out now, or why there is none.
/// The operator's own rule (`rollout::canary::running`), so the command and
/// the operator never disagree about whether a canary runs; one that has
/// done every step is being promoted and has no step left to act on.
fn running_canary(md: &ModelDeployment) -> Result<CanaryStatus, String> {
    let name = md.metadata.name.clone().unwrap_or_default();
    let running = md
        .status
        .as_ref()
        .and_then(|s| canary::running(s.canary.as_ref(), s.current_revision, &s.history));
    match running {
        None => Err(format!(
            "{name} has no canary running now (see kubectl model status)"
        )),
        Some(c) if c.step_index >= c.steps => Err(format!(
            "{name}: the canary of revision {} has done every step and is being promoted",
            c.revision
        )),
        Some(c) => Ok(c.clone()),
    }
}

async fn annotate(
    mds: &Api<ModelDeployment>,
    name: &str,
    key: &str,
    value: &str,
    explain: impl Fn(kube::Error, &str) -> String,
) -> Result<(), String> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    mds.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|e| explain(e, name))
}

/// The canary's step plan, the current step marked.
pub fn step_plan(md: &ModelDeployment, canary: &CanaryStatus) -> String {
    let Some(spec) = md.spec.rollout.canary.as_ref() else {
        return String::new();
    };
    let mut out = String::from(
        "
STEP  WHAT
",
    );
    for (n, step) in spec.steps.iter().enumerate() {
        let marker = match i32::try_from(n) == Ok(canary.step_index) {
            true => "> ",
            false => "  ",
        };
        let what = match (&step.set_weight, &step.pause) {
            (Some(w), _) => format!("setWeight {w}%"),
            (None, Some(p)) => match &p.duration {
                Some(d) => format!("pause {d}"),
                None => "pause (until kubectl model promote)".to_string(),
            },
            (None, None) => "-".to_string(),
        };
        out.push_str(&format!(
            "{marker}{:<4}{what}
",
            n + 1
        ));
    }
    out
}
