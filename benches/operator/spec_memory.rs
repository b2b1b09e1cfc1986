//! Memory under the largest spec (issue 24): one ModelDeployment's served
//! version changed again and again with every text-carrying field at its
//! bound, then the operator restarted, while a bystander stays served. The
//! operator's peak RSS (VmHWM) before and after the restart is held against
//! the bound docs/security.md sets ("Bounded spec, bounded memory").

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::{Api, Client};
use model_operator::api::ModelDeployment;
use serde_json::json;

use crate::convergence::delete_namespace;
use crate::report::Row;
use crate::support::*;

/// Half the chart's 256 Mi memory limit.
const BOUND_MIB: f64 = 128.0;

pub async fn run(client: &Client, revisions: usize) -> Vec<Row> {
    eprintln!("bench: peak RSS over {revisions} revisions of the largest spec and a restart");
    let ns = TestNamespace::new(client, "bench-spec-memory").await;
    let mut operator = Operator::start(&ns.name);
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let create = |name: &str, spec| {
        let mds = mds.clone();
        let md = model(name, spec);
        async move { mds.create(&Default::default(), &md).await.expect("create") }
    };
    create(
        "bystander",
        json!({"model": {"version": "1"}, "server": {"image": "srv:1"}}),
    )
    .await;
    create("largest", largest_spec("1")).await;
    let crs = Api::<ControllerRevision>::namespaced(client.clone(), &ns.name);
    let wait_revision = |n: usize| {
        let crs = crs.clone();
        async move {
            let name = format!("largest-r{n}");
            eventually(
                &format!("revision {n}"),
                std::time::Duration::from_secs(180),
                || async { crs.get_opt(&name).await.ok().flatten().is_some() },
            )
            .await;
        }
    };
    let set_version = |n: usize| {
        let mds = mds.clone();
        async move {
            let patch = json!({"spec": {"model": {"version": n.to_string()}}});
            mds.patch(
                "largest",
                &Default::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .expect("patch");
        }
    };
    wait_revision(1).await;
    for n in 2..=revisions {
        set_version(n).await;
        wait_revision(n).await;
    }
    let before = peak_rss_mib(operator.pid().expect("operator runs"));
    operator.restart();
    set_version(revisions + 1).await;
    wait_revision(revisions + 1).await;
    wait_for(
        &mds,
        "bystander",
        "still served after the restart",
        std::time::Duration::from_secs(120),
        |m| condition(m, "Ready").is_some_and(|c| c.0 == "True"),
    )
    .await;
    let after = peak_rss_mib(operator.pid().expect("operator runs again"));
    drop(operator);
    delete_namespace(&ns).await;
    let row = |what: String, mib: f64| {
        Row::new(
            what,
            format!("{mib:.1} MiB ({:.2}× the bound)", mib / BOUND_MIB),
        )
        .target("≤ 128 MiB", mib <= BOUND_MIB)
        .data(json!({"peak_rss_mib": mib, "bound_mib": BOUND_MIB, "revisions": revisions}))
    };
    vec![
        row(
            format!("peak RSS, {revisions} revisions of the largest spec"),
            before,
        ),
        row(
            "peak RSS after a restart and one more revision".into(),
            after,
        ),
    ]
}
