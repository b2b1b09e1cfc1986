//! A bounded spec and a bounded memory (docs/security.md, "Bounded spec"):
//! a spec at every bound the CRD sets is accepted and one past any bound is
//! refused at `kubectl apply` with the field named; 30 served-version
//! changes of the largest spec and a restart leave the shared operator
//! small, while another team's ModelDeployment stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::Api;
use kube::api::{ListParams, PostParams};
use model_operator::api::ModelDeployment;
use model_operator::api::bounds::SPEC_BUDGET;
use serde_json::{Value, json};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(180);

/// The largest spec plus what cannot run on the test cluster's nodes (a
/// node selector no node matches) and an analysis (Prometheus).
fn largest_everywhere() -> Value {
    let mut spec = largest_spec("1");
    spec["server"]["nodeSelector"] = (0..32)
        .map(|i| (qualified('n', i, 317), json!("s".repeat(63))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let metrics: Vec<Value> = (0..20)
        .map(|i| {
            let mut query = format!("vector(1) # gate {i} ");
            query.push_str(&"q".repeat(4096 - query.len()));
            json!({"name": format!("gate-{i:0>58}"), "query": query, "max": 1})
        })
        .collect();
    spec["rollout"] =
        json!({"analysis": {"prometheus": {"address": "http://127.0.0.1:9"}, "metrics": metrics}});
    spec
}

/// Refused by a server-side dry run, with a message naming `field`.
async fn refused(mds: &Api<ModelDeployment>, spec: Value, field: &str, says: &str) {
    let md = model("past", spec);
    let err = mds
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &md,
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted past the bound of {field}"));
    let message = err.to_string();
    assert!(
        message.contains(field) && message.contains(says),
        "past the bound of {field}: expected {says:?}, got {message}"
    );
}

#[tokio::test]
async fn a_spec_at_every_bound_is_accepted_and_one_past_any_bound_is_refused_with_the_field_named()
{
    let s = Setup::new("spec-bounds").await;
    let spec = largest_everywhere();
    let bytes = serde_json::to_vec(&spec).unwrap().len() as u64;
    println!("the largest spec: {bytes} bytes (budget {SPEC_BUDGET})");
    assert!(bytes <= SPEC_BUDGET);
    s.mds
        .create(&PostParams::default(), &model("at-bounds", spec.clone()))
        .await
        .expect("a spec at every bound is accepted");

    let past = |edit: &dyn Fn(&mut Value)| {
        let mut spec = spec.clone();
        edit(&mut spec);
        spec
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            past(&|s| {
                s["server"]["args"][1] =
                    json!(format!("{}x", s["server"]["args"][1].as_str().unwrap()))
            }),
            "spec.server.args",
            "at most 32768 bytes in all",
        ),
        (
            past(&|s| s["server"]["args"] = json!(["a".repeat(16 * 1024 + 1)])),
            "spec.server.args[0]",
            "16384",
        ),
        (
            past(&|s| s["server"]["args"] = json!(vec!["a"; 257])),
            "spec.server.args",
            "256",
        ),
        (
            past(&|s| s["server"]["command"] = json!(["c".repeat(4097)])),
            "spec.server.command[0]",
            "4096",
        ),
        (
            past(&|s| {
                s["server"]["command"][0] =
                    json!(format!("{}x", s["server"]["command"][0].as_str().unwrap()))
            }),
            "spec.server.command",
            "at most 8192 bytes in all",
        ),
        (
            past(&|s| {
                s["server"]["env"][0]["value"] = json!(format!(
                    "{}x",
                    s["server"]["env"][0]["value"].as_str().unwrap()
                ))
            }),
            "spec.server.env",
            "at most 32768 bytes in all in the values",
        ),
        (
            past(&|s| {
                s["server"]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "ONE_MORE", "value": ""}))
            }),
            "spec.server.env",
            "64",
        ),
        (
            past(&|s| {
                s["server"]["tolerations"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"key": "k"}))
            }),
            "spec.server.tolerations",
            "16",
        ),
        (
            past(&|s| s["server"]["tolerations"][0]["key"] = json!("k".repeat(257))),
            "spec.server.tolerations[0].key",
            "256",
        ),
        (
            past(&|s| {
                s["server"]["readinessProbe"]["httpGet"]["httpHeaders"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "X", "value": "y"}))
            }),
            "spec.server.readinessProbe.httpGet.httpHeaders",
            "8",
        ),
        (
            past(&|s| s["server"]["readinessProbe"]["tcpSocket"] = json!({"port": 8080})),
            "spec.server.readinessProbe",
            "takes one handler",
        ),
        (
            past(&|s| s["server"]["nodeSelector"]["one-more"] = json!("x")),
            "spec.server.nodeSelector",
            "32",
        ),
        (
            past(&|s| s["podMetadata"]["annotations"]["one-more"] = json!("x")),
            "spec.podMetadata.annotations",
            "32",
        ),
        (
            past(&|s| {
                let key = qualified('a', 0, 317);
                let longer = format!(
                    "{}x",
                    s["podMetadata"]["annotations"][&key].as_str().unwrap()
                );
                s["podMetadata"]["annotations"][&key] = json!(longer);
            }),
            "spec.podMetadata.annotations",
            "at most 32768 bytes in all in the values",
        ),
        (
            past(&|s| {
                let labels = s["podMetadata"]["labels"].as_object_mut().unwrap();
                let first = labels.keys().next().unwrap().clone();
                labels.remove(&first);
                labels.insert(format!("x{first}"), json!("v"));
            }),
            "spec.podMetadata.labels",
            "keys must be at most 317 characters",
        ),
        (
            past(&|s| s["rollout"]["analysis"]["metrics"][0]["query"] = json!("q".repeat(4097))),
            "spec.rollout.analysis.metrics[0].query",
            "4096",
        ),
        (
            past(&|s| s["model"]["uri"] = json!("u".repeat(2049))),
            "spec.model.uri",
            "2048",
        ),
    ];
    for (spec, field, says) in cases {
        refused(&s.mds, spec, field, says).await;
    }
}

#[tokio::test]
async fn thirty_revisions_of_the_largest_spec_and_a_restart_keep_the_operator_small() {
    let mut s = Setup::new("spec-memory").await;
    s.create_named(
        "bystander",
        json!({"model": {"version": "1"}, "server": {"image": "srv:1"}}),
    )
    .await;
    let serving = |md: &ModelDeployment| condition(md, "Ready").is_some_and(|c| c.0 == "True");
    s.wait_named("bystander", "the bystander serving", serving)
        .await;

    s.create_named("largest", largest_spec("1")).await;
    let revisions = Api::<ControllerRevision>::namespaced(s.client.clone(), &s.ns.name);
    for n in 1..=30 {
        if n > 1 {
            s.patch_spec("largest", json!({"model": {"version": n.to_string()}}))
                .await;
        }
        let name = format!("largest-r{n}");
        eventually(&format!("revision {n}"), TIMEOUT, || async {
            revisions.get_opt(&name).await.ok().flatten().is_some()
        })
        .await;
    }
    let stored: usize = revisions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|r| serde_json::to_vec(&r.data).ok())
        .map(|d| d.len())
        .sum();
    s.wait_named("largest", "the largest at revision 30", healthy_at(30))
        .await;
    let pid = s.operators[0].pid().expect("the operator runs");
    let before = peak_rss_mib(pid);

    // A restart lists every snapshot's metadata again, never their data.
    s.operators[0].restart();
    let pid = s.operators[0].pid().expect("the operator runs again");
    s.patch_spec("bystander", json!({"replicas": 2})).await;
    s.wait_named(
        "bystander",
        "the bystander scaled after the restart",
        |md| serving(md) && md.status.as_ref().is_some_and(|st| st.ready_replicas == 2),
    )
    .await;
    s.patch_spec("largest", json!({"model": {"version": "31"}}))
        .await;
    s.wait_named("largest", "the largest at revision 31", healthy_at(31))
        .await;
    let after = peak_rss_mib(pid);
    println!(
        "30 revisions of the largest spec ({:.1} MiB of snapshots stored): operator peak RSS \
         {before:.1} MiB; after a restart and one more rollout {after:.1} MiB",
        stored as f64 / 1024.0 / 1024.0
    );
    let bystander = s.mds.get("bystander").await.unwrap();
    assert!(serving(&bystander), "the bystander is still served");
}
