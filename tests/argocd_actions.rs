//! The Argo CD resource actions (config/argocd/mlops.dev/ModelDeployment/
//! actions) on live ModelDeployments: each is run by Argo CD's own Lua
//! package (hack/argocd-health/cmd/action, the code Argo CD's API server
//! runs), its result applied as a patch of the difference, as Argo CD
//! applies it; the same step is taken on a twin with the `kubectl model`
//! command the action mirrors, and both end the same.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use kube::Api;
use kube::api::{Patch, PatchParams};
use model_operator::api::{ModelDeployment, Outcome};
use serde_json::{Value, json};
use support::*;

/// Runs `action` ("discovery": the enabled actions) on `object` with
/// Argo CD's Lua package.
fn argocd(action: &str, object: &Value) -> Value {
    let root = repo_root();
    let mut child = Command::new("go")
        .args(["run", "./cmd/action"])
        .arg(root.join("config/argocd"))
        .arg(action)
        .current_dir(root.join("hack/argocd-health"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("go run ./cmd/action (Go is installed by hack/build-tools.sh's users)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "action {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What Argo CD sends for an action's result: the difference between the
/// live object and the one the action returned (status is not the
/// action's to change).
async fn run_action(mds: &Api<ModelDeployment>, name: &str, action: &str) {
    let mut live = serde_json::to_value(mds.get(name).await.unwrap()).unwrap();
    let strip = |v: &mut Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("status");
        o["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
    };
    let mut new = argocd(action, &live);
    strip(&mut live);
    strip(&mut new);
    let patch = json_patch::diff(&live, &new);
    assert!(!patch.0.is_empty(), "action {action} changed nothing");
    mds.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .unwrap_or_else(|e| panic!("apply action {action}: {e}"));
}

async fn enabled(mds: &Api<ModelDeployment>, name: &str) -> Vec<String> {
    let live = serde_json::to_value(mds.get(name).await.unwrap()).unwrap();
    serde_json::from_value(argocd("discovery", &live)).unwrap()
}

/// A canary of revision `revision` waiting at its pause for promotion.
fn waiting(revision: i64) -> impl Fn(&ModelDeployment) -> bool {
    move |m| {
        m.status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| c.revision == revision && c.waiting_for_promotion)
    }
}

fn ended(revision: i64, outcome: Outcome) -> impl Fn(&ModelDeployment) -> bool {
    move |m| support::outcome(m, revision) == Some(outcome)
}

#[tokio::test]
async fn each_argocd_action_does_what_its_kubectl_model_command_does() {
    let s = Setup::new("argocd-actions").await;
    let ns = s.ns.name.clone();
    let spec = json!({
        "model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 2,
        "rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
    });
    // "argo" is steered through the Argo CD actions, "plugin" with kubectl model.
    for name in ["argo", "plugin"] {
        s.create_named(name, spec.clone()).await;
        s.wait_named(name, "revision 1 stable", ended(1, Outcome::Stable))
            .await;
        s.set_version_of(name, "2").await;
        s.wait_named(name, "the canary of 2 waiting", waiting(2))
            .await;
    }
    assert_eq!(
        enabled(&s.mds, "argo").await,
        ["abort", "pause", "promote", "promote-full", "retry"]
    );

    run_action(&s.mds, "argo", "promote").await;
    kubectl_model(&ns, &["promote", "plugin"]);
    for name in ["argo", "plugin"] {
        s.wait_named(name, "2 promoted", ended(2, Outcome::Stable))
            .await;
    }
    assert_eq!(enabled(&s.mds, "argo").await, ["pause", "retry"]);

    for name in ["argo", "plugin"] {
        s.set_version_of(name, "3").await;
        s.wait_named(name, "the canary of 3 waiting", waiting(3))
            .await;
    }
    run_action(&s.mds, "argo", "abort").await;
    kubectl_model(&ns, &["abort", "plugin"]);
    for name in ["argo", "plugin"] {
        let m = s
            .wait_named(name, "3 aborted", ended(3, Outcome::RolledBack))
            .await;
        assert_eq!(history_entry(&m, 3).unwrap().reason, "Aborted");
        assert_eq!(stable(&m), Some(2));
    }

    run_action(&s.mds, "argo", "pause").await;
    kubectl_model(&ns, &["pause", "plugin"]);
    for name in ["argo", "plugin"] {
        assert!(s.mds.get(name).await.unwrap().spec.paused);
    }
    assert_eq!(enabled(&s.mds, "argo").await, ["resume", "retry"]);
    run_action(&s.mds, "argo", "resume").await;
    kubectl_model(&ns, &["resume", "plugin"]);
    run_action(&s.mds, "argo", "retry").await;
    kubectl_model(&ns, &["retry", "plugin"]);
    for name in ["argo", "plugin"] {
        let m = s.mds.get(name).await.unwrap();
        assert!(!m.spec.paused);
        let token = m.metadata.annotations.unwrap_or_default()["mlops.dev/retry"].clone();
        assert!(token.parse::<i64>().is_ok(), "{name}: retry token {token}");
    }
}
