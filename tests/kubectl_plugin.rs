//! Every `kubectl model` subcommand against the local cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use model_operator::api::{ModelDeployment, Phase};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn plugin(ns: &str, args: &[&str]) -> Output {
    plugin_as(&kubeconfig_path(), ns, args)
}

fn plugin_as(kubeconfig: &std::path::Path, ns: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-model"))
        .args(["-n", ns])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run kubectl-model")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Settled, Healthy and running `revision` (whatever its outcome).
fn serving(revision: i64) -> impl Fn(&ModelDeployment) -> bool {
    move |m| {
        let s = m.status.as_ref();
        s.and_then(|s| s.observed_generation) == m.metadata.generation
            && s.and_then(|s| s.phase) == Some(Phase::Healthy)
            && s.and_then(|s| s.current_revision) == Some(revision)
    }
}

#[tokio::test]
async fn every_subcommand_works_against_the_cluster() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "plugin").await;
    let _operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let md: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
        "spec": {"model": {"version": "1.0"}, "server": {"image": "srv:1"}},
    }))
    .unwrap();
    mds.create(&PostParams::default(), &md).await.unwrap();
    wait_for(&mds, "m", "serve revision 1", TIMEOUT, serving(1)).await;
    let v2 = json!({"spec": {"model": {"version": "2.0"}, "server": {"image": "srv:2", "args": ["--fast"]}}});
    mds.patch("m", &PatchParams::default(), &Patch::Merge(v2))
        .await
        .unwrap();
    wait_for(&mds, "m", "serve revision 2", TIMEOUT, serving(2)).await;

    let status = stdout(&plugin(&ns.name, &["status", "m"]));
    assert!(
        status.contains("Healthy") && status.contains("running 2, stable 2, requested 2"),
        "{status}"
    );
    assert!(
        status.contains("Ready") && status.contains("Serving"),
        "{status}"
    );

    let history = stdout(&plugin(&ns.name, &["history", "m"]));
    assert!(
        history.contains("1.0") && history.contains("Superseded"),
        "{history}"
    );
    assert!(
        history.contains("2*") && history.contains("srv:2") && history.contains("Stable"),
        "{history}"
    );

    // Rollback defaults to the newest earlier stable revision, and sets the
    // spec exactly to it (the args added since are gone).
    let out = plugin(&ns.name, &["rollback", "m"]);
    assert!(stdout(&out).contains("revision 1"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GitOps"),
        "warns that Git should follow"
    );
    let m = wait_for(&mds, "m", "serve revision 1 again", TIMEOUT, serving(1)).await;
    assert_eq!(
        (m.spec.model.version.as_str(), m.spec.server.image.as_str()),
        ("1.0", "srv:1")
    );
    assert_eq!(m.spec.server.args, None);
    // --to-revision picks one explicitly.
    stdout(&plugin(&ns.name, &["rollback", "m", "--to-revision", "2"]));
    wait_for(&mds, "m", "serve revision 2 again", TIMEOUT, serving(2)).await;

    stdout(&plugin(&ns.name, &["pause", "m"]));
    assert!(mds.get("m").await.unwrap().spec.paused);
    stdout(&plugin(&ns.name, &["resume", "m"]));
    assert!(!mds.get("m").await.unwrap().spec.paused);

    stdout(&plugin(&ns.name, &["retry", "m"]));
    let m = mds.get("m").await.unwrap();
    assert!(
        m.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("mlops.dev/retry")
    );

    // Clear errors.
    let missing = plugin(&ns.name, &["status", "nope"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains(&format!("nope not found in namespace {}", ns.name)),
        "{err}"
    );
    let no_cluster = Command::new(env!("CARGO_BIN_EXE_kubectl-model"))
        .args(["status", "m"])
        .env("KUBECONFIG", repo_root().join("target/no-such-kubeconfig"))
        .output()
        .unwrap();
    assert!(!no_cluster.status.success());
    assert!(String::from_utf8_lossy(&no_cluster.stderr).contains("kubeconfig"));

    // And through kubectl's own plugin discovery.
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-model"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl_bin = repo_root().join(".local/bin/kubectl");
    let via_kubectl = Command::new(kubectl_bin)
        .args(["model", "-n", &ns.name, "status", "m"])
        .env("KUBECONFIG", kubeconfig_path())
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(stdout(&via_kubectl).contains("running 2"));
}

/// Asserts the plugin failed because the user may not do `verb`, and said
/// so in words a person on call understands.
fn assert_forbidden(out: &Output, user: &str, verb: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded without the rights");
    for part in [
        "error: forbidden:",
        user,
        &format!("cannot {verb} resource \"modeldeployments\""),
        "kubectl auth can-i --list",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from:\n{stderr}");
    }
}

#[tokio::test]
async fn a_user_without_the_rights_is_told_it_is_forbidden() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "plugin-forbidden").await;
    let n = ns.name.as_str();
    Api::<ModelDeployment>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &minimal_model("m"))
        .await
        .unwrap();
    // "nobody" may do nothing; "viewer" may read ModelDeployments only.
    for args in [
        &["create", "serviceaccount", "nobody"][..],
        &["create", "serviceaccount", "viewer"],
        &[
            "create",
            "role",
            "viewer",
            "--verb=get,list",
            "--resource=modeldeployments.mlops.dev",
        ],
        &[
            "create",
            "rolebinding",
            "viewer",
            "--role=viewer",
            &format!("--serviceaccount={n}:viewer"),
        ],
    ] {
        let out = kubectl(&[&["-n", n][..], args].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let nobody = support::identity::service_account_kubeconfig(n, "nobody");
    let out = plugin_as(&nobody, n, &["status", "m"]);
    assert_forbidden(&out, &format!("system:serviceaccount:{n}:nobody"), "get");

    let viewer = support::identity::service_account_kubeconfig(n, "viewer");
    assert!(stdout(&plugin_as(&viewer, n, &["status", "m"])).contains("m"));
    let out = plugin_as(&viewer, n, &["pause", "m"]);
    assert_forbidden(&out, &format!("system:serviceaccount:{n}:viewer"), "patch");
}

/// Issue 24: what other people write (an image, a revision named like
/// ours) cannot steer the plugin: escape sequences are printed as text, and
/// `rollback` refuses a revision this ModelDeployment does not own.
#[tokio::test]
async fn the_plugin_prints_no_escape_sequences_and_rolls_back_only_to_owned_revisions() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "plugin-hostile").await;
    let _operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let md = model(
        "m",
        json!({"model": {"version": "1.0"}, "server": {"image": "srv:1\u{1b}[2J\u{202e}"}}),
    );
    mds.create(&PostParams::default(), &md).await.unwrap();
    wait_for(&mds, "m", "serve revision 1", TIMEOUT, serving(1)).await;
    let out = stdout(&plugin(&ns.name, &["history", "m"]));
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{202e}'),
        "{out:?}"
    );
    assert!(out.contains("\\u{1b}[2J"), "{out}");

    // Someone else's object named like revision 7 of m.
    let revisions =
        Api::<k8s_openapi::api::apps::v1::ControllerRevision>::namespaced(client.clone(), &ns.name);
    let forged: k8s_openapi::api::apps::v1::ControllerRevision = serde_json::from_value(json!({
        "metadata": {"name": "m-r7", "annotations": {"mlops.dev/served-hash": "x"}},
        "revision": 7,
        "data": {"model": {"version": "evil"}, "server": {"image": "evil:1"}},
    }))
    .unwrap();
    revisions
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();
    let out = plugin(&ns.name, &["rollback", "m", "--to-revision", "7"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a revision of m"), "{err}");
    let m = mds.get("m").await.unwrap();
    assert_eq!(m.spec.model.version, "1.0", "the spec is untouched");
}

/// Issue 29: under Argo CD, `kubectl model pause` says what self-heal will
/// and will not undo; without Argo CD's tracking metadata it says nothing.
#[tokio::test]
async fn pause_under_argocd_prints_the_gitops_caveat() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "plugin-gitops").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let mut tracked = model(
        "tracked",
        json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}}),
    );
    tracked.metadata.annotations = Some(
        [(
            "argocd.argoproj.io/tracking-id".to_string(),
            format!("models:mlops.dev/ModelDeployment:{}/tracked", ns.name),
        )]
        .into(),
    );
    mds.create(&PostParams::default(), &tracked).await.unwrap();
    let plain = model(
        "plain",
        json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}}),
    );
    mds.create(&PostParams::default(), &plain).await.unwrap();

    let out = plugin(&ns.name, &["pause", "tracked"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("managed by Argo CD") && err.contains("`paused: true`"),
        "{err}"
    );
    let out = plugin(&ns.name, &["pause", "plain"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).is_empty());
}

/// `--print-patch` on a spec-writing command, then the command itself: the
/// patch writes nothing, and applied with `kubectl patch --type merge` (as a
/// person would, or Git's sync) it gives the spec the command gives.
fn print_patch_then_command(
    ns: &str,
    name: &str,
    command: &[&str],
    before: &dyn Fn(),
) -> (serde_json::Value, serde_json::Value) {
    let get = || -> serde_json::Value {
        let out = kubectl(&["-n", ns, "get", "mdep", name, "-o", "json"]);
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    before();
    let unchanged = get();
    let printed = plugin(ns, &[command, &["--print-patch"]].concat());
    let patch = stdout(&printed);
    let err = String::from_utf8_lossy(&printed.stderr);
    assert!(err.contains("Not written to the cluster"), "{err}");
    // Not resourceVersion: the operator's own status writes move it at any
    // time. What a client of the spec could change is the generation, the
    // spec, the labels and the annotations.
    let written = |o: &serde_json::Value| {
        (
            o["metadata"]["generation"].clone(),
            o["spec"].clone(),
            o["metadata"]["labels"].clone(),
            o["metadata"]["annotations"].clone(),
        )
    };
    let after = get();
    assert_eq!(
        written(&after),
        written(&unchanged),
        "--print-patch wrote to the cluster"
    );
    let file = repo_root()
        .join("target/e2e-kubeconfigs")
        .join(format!("{ns}-{name}-patch.yaml"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &patch).unwrap();
    let file = file.to_string_lossy();
    stdout(&kubectl(&[
        "-n",
        ns,
        "patch",
        "mdep",
        name,
        "--type",
        "merge",
        "--patch-file",
        &file,
    ]));
    let by_patch = get()["spec"].clone();
    before();
    stdout(&plugin(ns, command));
    (by_patch, get()["spec"].clone())
}

#[tokio::test]
async fn print_patch_writes_nothing_and_is_the_change_the_command_makes() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "plugin-patch").await;
    let _operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    mds.create(&PostParams::default(), &minimal_model("m"))
        .await
        .unwrap();
    wait_for(&mds, "m", "serve revision 1", TIMEOUT, serving(1)).await;
    // Revision 2 adds fields revision 1 lacks: the patch must remove them.
    let v2 = json!({"spec": {
        "model": {"version": "2.0", "format": "onnx"},
        "server": {"image": "srv:2", "args": ["--fast"], "env": [{"name": "A", "value": "1"}]},
        "podMetadata": {"labels": {"team": "fraud"}},
    }});
    let v2_spec = || {
        let out = kubectl(&[
            "-n",
            &ns.name,
            "patch",
            "mdep",
            "m",
            "--type",
            "merge",
            "-p",
            &v2.to_string(),
        ]);
        stdout(&out);
    };
    v2_spec();
    wait_for(&mds, "m", "serve revision 2", TIMEOUT, serving(2)).await;

    let (by_patch, by_command) = print_patch_then_command(
        &ns.name,
        "m",
        &["rollback", "m", "--to-revision", "1"],
        &v2_spec,
    );
    assert_eq!(by_patch, by_command);
    assert_eq!(by_patch["model"]["version"], "1.0");
    assert!(by_patch["server"].get("args").is_none(), "{by_patch}");
    assert!(by_patch.get("podMetadata").is_none(), "{by_patch}");

    let set_paused = |paused: bool| {
        let patch = format!(r#"{{"spec":{{"paused":{paused}}}}}"#);
        stdout(&kubectl(&[
            "-n", &ns.name, "patch", "mdep", "m", "--type", "merge", "-p", &patch,
        ]));
    };
    let unpause = || set_paused(false);
    let (by_patch, by_command) = print_patch_then_command(&ns.name, "m", &["pause", "m"], &unpause);
    assert_eq!(by_patch, by_command);
    assert_eq!(by_patch["paused"], true);

    let pause = || set_paused(true);
    let (by_patch, by_command) = print_patch_then_command(&ns.name, "m", &["resume", "m"], &pause);
    assert_eq!(by_patch, by_command);
    assert_eq!(by_patch["paused"], false);
}

/// Flux's labels count as GitOps management too, and the caveat says what
/// to commit and how to print it.
#[tokio::test]
async fn pause_under_flux_says_what_to_commit() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "plugin-flux").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let mut tracked = minimal_model("tracked");
    tracked.metadata.labels = Some(
        [(
            "kustomize.toolkit.fluxcd.io/name".to_string(),
            "models".to_string(),
        )]
        .into(),
    );
    mds.create(&PostParams::default(), &tracked).await.unwrap();
    let out = plugin(&ns.name, &["resume", "tracked"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for part in [
        "managed by Flux",
        "`paused: false`",
        "kubectl model resume tracked --print-patch",
    ] {
        assert!(err.contains(part), "{part:?} missing from {err}");
    }
}
