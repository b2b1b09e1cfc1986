//! The Helm chart's RBAC from the other side: what the operator's
//! ServiceAccount may not do, shown with real API calls answered 403, in
//! cluster-wide and namespaced mode; and the operator itself running with
//! the namespaced identity: it serves its namespace and is refused others.
//! (That the RBAC is enough is shown by every e2e test: `make test` runs
//! their operators as the chart's ServiceAccount.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use model_operator::api::{ModelDeployment, Phase};
use serde_json::json;
use support::helm::{Release, chart};
use support::identity::{service_account_kubeconfig, wait_authorized};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The chart's ServiceAccount and RBAC only (no operator pod, no CRD: the
/// tests install it from the code), as release `model-operator` in `ns`.
fn install_identity(ns: &str, sets: &[&str]) -> (Release, PathBuf) {
    let mut args = vec!["--set", "replicas=0", "--set", "crds.install=false"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let release = Release::install("model-operator", ns, &chart(), &args);
    let user = format!("system:serviceaccount:{ns}:model-operator");
    let scope = match sets
        .iter()
        .find_map(|s| s.strip_prefix("watchNamespaces={"))
    {
        Some(list) => vec![
            "-n",
            list.trim_end_matches('}').split(',').next().unwrap_or(ns),
        ],
        None => vec!["--all-namespaces"],
    };
    wait_authorized(
        &user,
        &[&["list", "modeldeployments.mlops.dev"][..], &scope].concat(),
    );
    (release, service_account_kubeconfig(ns, "model-operator"))
}

fn forbidden<T: Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// Authorized: it succeeded, or failed for another reason than RBAC (a
/// missing object is a 404 only for someone allowed to look).
fn allowed<T: Debug>(what: &str, result: Result<T, kube::Error>) {
    if let Err(kube::Error::Api(s)) = &result
        && s.code == 403
    {
        panic!("{what}: forbidden: {}", s.message);
    }
}

/// A PodDisruptionBudget as the operator applies one, carrying its label
/// (the admission policy lets it write only what it manages).
fn a_pdb() -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "m", "labels": {"app.kubernetes.io/managed-by": "model-operator"}},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}},
    }))
    .expect("PodDisruptionBudget")
}

fn a_deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "intruder"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }))
    .expect("Deployment")
}

#[tokio::test]
async fn cluster_wide_the_operator_cannot_do_what_it_does_not_need() {
    let admin = client().await;
    ensure_crd(&admin).await;
    let ns = TestNamespace::new(&admin, "rbac-cluster").await;
    let (_release, kubeconfig) = install_identity(&ns.name, &[]);
    let op = client_from(&kubeconfig).await;
    let n = ns.name.as_str();

    // What it needs.
    allowed(
        "list ModelDeployments everywhere",
        Api::<ModelDeployment>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );
    allowed(
        "read a Secret by name",
        Api::<Secret>::namespaced(op.clone(), n)
            .get("prometheus-token")
            .await,
    );

    // Its optional children: watched everywhere, deleted by name (when the
    // spec no longer asks for them); written only by server-side apply.
    let pdbs = Api::<PodDisruptionBudget>::namespaced(op.clone(), n);
    allowed(
        "watch PodDisruptionBudgets everywhere",
        Api::<PodDisruptionBudget>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );
    allowed(
        "delete a PodDisruptionBudget by name",
        pdbs.delete("m", &DeleteParams::default()).await,
    );
    allowed(
        "server-side apply a PodDisruptionBudget",
        pdbs.patch(
            "m",
            &PatchParams::apply("model-operator").dry_run(),
            &Patch::Apply(a_pdb()),
        )
        .await,
    );
    forbidden(
        "update a PodDisruptionBudget (apply is a patch)",
        pdbs.replace("m", &PostParams::default(), &a_pdb()).await,
    );
    forbidden(
        "delete every PodDisruptionBudget at once",
        pdbs.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await,
    );
    forbidden(
        "evict a pod (a budget is kept, never spent)",
        Api::<Pod>::namespaced(op.clone(), n)
            .evict("p", &Default::default())
            .await,
    );

    // Secrets only by name: never listed or watched, here or anywhere.
    forbidden(
        "list Secrets cluster-wide",
        Api::<Secret>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "list Secrets in a namespace",
        Api::<Secret>::namespaced(op.clone(), n)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "watch Secrets cluster-wide",
        Api::<Secret>::all(op.clone())
            .watch(&WatchParams::default(), "0")
            .await
            .map(|_| ()),
    );
    // Nothing cluster-scoped, nothing it does not manage.
    forbidden(
        "delete a namespace",
        Api::<Namespace>::all(op.clone())
            .delete(n, &DeleteParams::default())
            .await,
    );
    forbidden(
        "list nodes",
        Api::<Node>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "create a ClusterRole",
        Api::<ClusterRole>::all(op.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": format!("{n}-escalate")}}))
                    .expect("ClusterRole"),
            )
            .await,
    );
    forbidden(
        "list ConfigMaps",
        Api::<ConfigMap>::namespaced(op.clone(), n)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "create a Pod",
        Api::<Pod>::namespaced(op.clone(), n)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "p"},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}))
                .expect("Pod"),
            )
            .await,
    );
    // The spec is the user's: the operator writes status only.
    let mds = Api::<ModelDeployment>::namespaced(op.clone(), n);
    forbidden(
        "change a ModelDeployment's spec",
        mds.patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await,
    );
    forbidden(
        "create a ModelDeployment",
        mds.create(&PostParams::default(), &minimal_model("m"))
            .await,
    );
    forbidden(
        "delete a ModelDeployment",
        mds.delete("m", &DeleteParams::default()).await,
    );
    // Leases only in its own namespace.
    forbidden(
        "read a Lease in kube-system",
        Api::<Lease>::namespaced(op.clone(), "kube-system")
            .get("kube-scheduler")
            .await,
    );
    allowed(
        "read its leader-election Lease",
        Api::<Lease>::namespaced(op, n).get("model-operator").await,
    );
}

fn is_healthy(md: &ModelDeployment) -> bool {
    let status = md.status.as_ref();
    status.and_then(|s| s.observed_generation) == md.metadata.generation
        && status.and_then(|s| s.phase) == Some(Phase::Healthy)
}

#[tokio::test]
async fn namespaced_the_operator_serves_its_namespaces_and_nothing_else() {
    let admin = client().await;
    ensure_crd(&admin).await;
    let ops = TestNamespace::new(&admin, "rbac-ops").await;
    let watched = TestNamespace::new(&admin, "rbac-watched").await;
    let other = TestNamespace::new(&admin, "rbac-other").await;
    let set = format!("watchNamespaces={{{}}}", watched.name);
    let (_release, kubeconfig) = install_identity(&ops.name, &[&set]);
    let op = client_from(&kubeconfig).await;
    let (w, o) = (watched.name.as_str(), other.name.as_str());

    // The operator, as this identity, runs a model in its namespace: the
    // Role is enough for children, revisions, pods, status and events.
    support::identity::grant_leader_election(&ops.name, "model-operator", w);
    let _operator = Operator::start_as(
        &kubeconfig,
        w,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--health-addr",
            "127.0.0.1:0",
        ],
    );
    let mds = Api::<ModelDeployment>::namespaced(admin.clone(), w);
    let spec = json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"},
        "disruptionBudget": {"maxUnavailable": 1}});
    mds.create(&PostParams::default(), &model("m", spec))
        .await
        .expect("create");
    wait_for(&mds, "m", "become Healthy", TIMEOUT, is_healthy).await;
    let pdb = Api::<PodDisruptionBudget>::namespaced(admin.clone(), w);
    assert!(pdb.get_opt("m").await.expect("get PDB").is_some());
    // Events go out just after the status write that made it Healthy.
    let events = Api::<Event>::namespaced(admin.clone(), w);
    let recorded = "the operator records RolloutComplete (it may create Events)";
    eventually(recorded, TIMEOUT, || async {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        if reasons.iter().any(|r| r == "RolloutComplete") {
            Ok(())
        } else {
            Err(reasons)
        }
    })
    .await;

    // Outside its namespaces it may do nothing.
    forbidden(
        "list ModelDeployments cluster-wide",
        Api::<ModelDeployment>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "list ModelDeployments in another namespace",
        Api::<ModelDeployment>::namespaced(op.clone(), o)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "create a Deployment in another namespace",
        Api::<Deployment>::namespaced(op.clone(), o)
            .patch(
                "intruder",
                &PatchParams::apply("model-operator").force(),
                &Patch::Apply(a_deployment()),
            )
            .await,
    );
    forbidden(
        "create a PodDisruptionBudget in another namespace",
        Api::<PodDisruptionBudget>::namespaced(op.clone(), o)
            .patch(
                "m",
                &PatchParams::apply("model-operator").force(),
                &Patch::Apply(a_pdb()),
            )
            .await,
    );
    forbidden(
        "read a Secret in another namespace",
        Api::<Secret>::namespaced(op.clone(), o)
            .get("prometheus-token")
            .await,
    );
    forbidden(
        "list Secrets in its own namespace",
        Api::<Secret>::namespaced(op.clone(), w)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "list namespaces",
        Api::<Namespace>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );
    allowed(
        "read a Secret by name in its namespace",
        Api::<Secret>::namespaced(op, w)
            .get("prometheus-token")
            .await,
    );

    // Told to watch a namespace it has no Role in, it stops at once and
    // says why.
    let refused = Operator::start_as(
        &kubeconfig,
        o,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--health-addr",
            "127.0.0.1:0",
        ],
    );
    refused.wait_log("forbidden", TIMEOUT).await;
}

/// The namespace roles teams already have grant ModelDeployments, the
/// Kubernetes way (the chart's ClusterRoles aggregate into admin, edit and
/// view): an editor may create and change them, a viewer only read them,
/// and neither writes the status, which is the operator's.
#[tokio::test]
async fn the_built_in_namespace_roles_grant_model_deployments() {
    let admin = client().await;
    ensure_crd(&admin).await;
    let ops = TestNamespace::new(&admin, "rbac-roles-ops").await;
    let team = TestNamespace::new(&admin, "rbac-roles-team").await;
    let (_release, _) = install_identity(&ops.name, &[]);
    let (editor, viewer) = (
        format!("editor-{}", team.name),
        format!("viewer-{}", team.name),
    );
    for (user, role) in [(&editor, "edit"), (&viewer, "view")] {
        let out = kubectl(&[
            "-n",
            &team.name,
            "create",
            "rolebinding",
            &format!("{role}-binding"),
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ns = ["-n", team.name.as_str()];
    let md = "modeldeployments.mlops.dev";
    // The aggregation controller fills the built-in roles in a moment.
    wait_authorized(&editor, &[&["create", md][..], &ns].concat());
    wait_authorized(&viewer, &[&["list", md][..], &ns].concat());
    let can_on = |user: &str, verb: &str, what: &str, sub: &[&str]| {
        kubectl(&[&["auth", "can-i", "--as", user, verb, what][..], sub, &ns].concat())
            .status
            .success()
    };
    let can = |user: &str, verb: &str, what: &str| can_on(user, verb, what, &[]);
    for verb in [
        "get", "list", "watch", "create", "patch", "update", "delete",
    ] {
        assert!(
            can(&editor, verb, md),
            "an editor may {verb} ModelDeployments"
        );
    }
    assert!(can_on(&editor, "patch", md, &["--subresource=scale"]));
    for verb in ["get", "list", "watch"] {
        assert!(
            can(&viewer, verb, md),
            "a viewer may {verb} ModelDeployments"
        );
    }
    for verb in ["create", "patch", "delete"] {
        assert!(
            !can(&viewer, verb, md),
            "a viewer may not {verb} ModelDeployments"
        );
    }
    for user in [&editor, &viewer] {
        assert!(
            !can_on(user, "patch", md, &["--subresource=status"]),
            "{user} may not write status"
        );
    }
    // Only in the namespace bound: nothing elsewhere.
    assert!(
        !kubectl(&[
            "auth", "can-i", "--as", &editor, "create", md, "-n", &ops.name
        ])
        .status
        .success()
    );
}
