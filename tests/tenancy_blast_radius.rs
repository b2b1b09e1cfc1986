//! A smaller blast radius (issue 24, docs/security.md "Writes only to what
//! it manages" and "Secrets only where the admin says"): the chart's
//! ValidatingAdmissionPolicy lets the operator's ServiceAccount write only
//! what it manages, never in kube-system, whatever RBAC grants it; and
//! with `secretNamespaces` it reads Secrets only there. Shown with
//! `kubectl --as` the ServiceAccount (the admin may impersonate), every
//! write a server-side dry run, which goes through admission like a real
//! one and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::process::Output;
use std::time::Duration;

use serde_json::json;
use support::helm::Release;
use support::identity::wait_authorized;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(60);
const DENIED: &str = "denied request";

/// kubectl as the user `user`.
fn kubectl_as(user: &str, args: &[&str]) -> Output {
    kubectl(&[&["--as", user][..], args].concat())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Creates an object as the admin from JSON.
fn admin_apply(object: serde_json::Value) {
    let dir = repo_root().join("target/e2e-kubeconfigs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "blast-{}-{}.json",
        object["metadata"]["namespace"].as_str().unwrap_or("-"),
        object["metadata"]["name"].as_str().unwrap()
    ));
    std::fs::write(&path, object.to_string()).unwrap();
    let out = kubectl(&["apply", "-f", &path.to_string_lossy()]);
    assert!(out.status.success(), "apply: {}", text(&out));
}

fn deployment(namespace: &str, name: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    })
}

/// `kubectl patch` of a Deployment's labels, as `user`, dry run.
fn patch_deployment(user: &str, namespace: &str, name: &str, labels: serde_json::Value) -> Output {
    let patch = json!({"metadata": {"labels": labels}}).to_string();
    kubectl_as(
        user,
        &[
            "-n",
            namespace,
            "patch",
            "deployment",
            name,
            "--dry-run=server",
            "-p",
            &patch,
        ],
    )
}

fn assert_denied(what: &str, out: &Output, why: &str) {
    let said = text(out);
    assert!(
        !out.status.success() && said.contains(DENIED) && said.contains(why),
        "{what}: expected the admission policy to deny it ({why}), got: {said}"
    );
}

fn assert_allowed(what: &str, out: &Output) {
    assert!(out.status.success(), "{what}: {}", text(out));
}

/// Deletes the kube-system Deployment the test made, however it ends.
struct KubeSystemDeployment(&'static str);

impl Drop for KubeSystemDeployment {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "-n",
            "kube-system",
            "delete",
            "deployment",
            self.0,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

#[tokio::test]
async fn the_operators_account_cannot_patch_kube_system_or_foreign_deployments_nor_read_unlisted_secrets()
 {
    let admin = client().await;
    ensure_crd(&admin).await;
    let ops = TestNamespace::new(&admin, "blast-ops").await;
    let tenant = TestNamespace::new(&admin, "blast-tenant").await;
    let elsewhere = TestNamespace::new(&admin, "blast-elsewhere").await;
    let (o, t, e) = (
        ops.name.as_str(),
        tenant.name.as_str(),
        elsewhere.name.as_str(),
    );
    // The chart as an admin installs it (admissionPolicy on by default),
    // with Secrets readable in the tenant's namespace only.
    let _release = Release::identity(o, &[&format!("secretNamespaces={{{t}}}")]);
    let sa = format!("system:serviceaccount:{o}:model-operator");
    wait_authorized(&sa, &["patch", "deployments.apps", "-n", t]);
    wait_authorized(&sa, &["get", "secrets", "-n", t]);

    let ours = json!({"app.kubernetes.io/managed-by": "model-operator"});
    admin_apply(deployment(t, "foreign", json!({"team": "a"})));
    admin_apply(deployment(t, "child", ours.clone()));
    admin_apply(deployment(
        "kube-system",
        "blast-radius-probe",
        ours.clone(),
    ));
    let _cleanup = KubeSystemDeployment("blast-radius-probe");

    // RBAC allows every one of these patches; the policy decides. It is
    // enforced once the API server has loaded it.
    eventually(
        "the policy refuses a foreign Deployment",
        TIMEOUT,
        || async {
            let out = patch_deployment(&sa, t, "foreign", json!({"x": "1"}));
            if text(&out).contains(DENIED) {
                Ok(())
            } else {
                Err(text(&out))
            }
        },
    )
    .await;
    let foreign = patch_deployment(&sa, t, "foreign", json!({"x": "1"}));
    assert_denied(
        "patch a Deployment without our labels",
        &foreign,
        "objects it manages",
    );
    // Adding our label in the same write does not make it ours.
    let adopted = patch_deployment(&sa, t, "foreign", ours.clone());
    assert_denied(
        "label a foreign Deployment as ours",
        &adopted,
        "objects it manages",
    );
    let system = patch_deployment(&sa, "kube-system", "blast-radius-probe", json!({"x": "1"}));
    assert_denied("patch a Deployment in kube-system", &system, "kube-system");
    let create = kubectl_as(
        &sa,
        &[
            "-n",
            t,
            "create",
            "deployment",
            "unlabelled",
            "--image=i",
            "--dry-run=server",
        ],
    );
    assert_denied(
        "create an unlabelled Deployment",
        &create,
        "objects it manages",
    );
    // Its own child: patched as ever; not made foreign by the patch.
    let own = patch_deployment(&sa, t, "child", json!({"x": "1"}));
    assert_allowed("patch its own Deployment", &own);
    let disown = patch_deployment(
        &sa,
        t,
        "child",
        json!({"app.kubernetes.io/managed-by": "x"}),
    );
    assert_denied(
        "give away its own Deployment",
        &disown,
        "objects it manages",
    );

    // Deletes (a canary Deployment of another revision, or one handed over
    // on promotion): RBAC allows them, the policy only of its own.
    let delete = |namespace: &str, name: &str| {
        kubectl_as(
            &sa,
            &[
                "-n",
                namespace,
                "delete",
                "deployment",
                name,
                "--dry-run=server",
            ],
        )
    };
    assert_denied(
        "delete a foreign Deployment",
        &delete(t, "foreign"),
        "objects it manages",
    );
    assert_denied(
        "delete a Deployment in kube-system",
        &delete("kube-system", "blast-radius-probe"),
        "kube-system",
    );
    assert_allowed("delete its own Deployment", &delete(t, "child"));

    // Secrets: by name in the listed namespace, nowhere else.
    let secret =
        |namespace: &str| kubectl_as(&sa, &["-n", namespace, "get", "secret", "prometheus-token"]);
    let listed = text(&secret(t));
    assert!(listed.contains("NotFound"), "a listed namespace: {listed}");
    let unlisted = text(&secret(e));
    assert!(
        unlisted.contains("Forbidden") || unlisted.contains("forbidden"),
        "an unlisted namespace: {unlisted}"
    );
}
