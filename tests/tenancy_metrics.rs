//! `/metrics` reveals nothing to the wrong reader, and nothing of what is
//! gone (issue 24, docs/security.md "The operator's /metrics"): a gate
//! renamed 20 times and then its ModelDeployment deleted leave no series.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use model_operator::api::ModelDeployment;
use serde_json::{Value, json};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The series naming `name` in `namespace`.
fn series_of(text: &str, namespace: &str, name: &str) -> Vec<String> {
    let (ns, md) = (
        format!(r#"namespace="{namespace}""#),
        format!(r#"modeldeployment="{name}""#),
    );
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&ns) && l.contains(&md))
        .map(str::to_string)
        .collect()
}

/// The gates `analysis_value` shows for `name`.
fn gates_shown(text: &str, namespace: &str, name: &str) -> Vec<String> {
    series_of(text, namespace, name)
        .iter()
        .filter(|l| l.starts_with("model_operator_analysis_value{"))
        .filter_map(|l| Some(l.split("metric=\"").nth(1)?.split('"').next()?.to_string()))
        .collect()
}

fn gate(name: &str, address: &str) -> Value {
    json!({
        "prometheus": {"address": address, "timeoutSeconds": 2},
        "interval": "2s",
        "bakeTime": "2s",
        "metrics": [{"name": name, "query": "vector(0.01)", "max": 0.05}],
    })
}

#[tokio::test]
async fn a_gate_renamed_20_times_then_deleted_leaves_no_series() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "metrics-renamed").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let operator = Operator::start(&ns.name);
    let (port, _seen, _prometheus) = support::fakes::fake_prometheus("0.01").await;
    let address = format!("http://127.0.0.1:{port}");
    let spec = |gate_name: &str| {
        json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1,
            "rollout": {"analysis": gate(gate_name, &address)}})
    };
    // A bystander in the same namespace keeps its series throughout.
    for name in ["m", "bystander"] {
        mds.create(&PostParams::default(), &model(name, spec("gate-0")))
            .await
            .expect("create");
    }

    for i in 0..=20 {
        let name = format!("gate-{i}");
        if i > 0 {
            let patch = json!({"spec": {"rollout": {"analysis": gate(&name, &address)}}});
            mds.patch("m", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("rename the gate");
        }
        // The renamed gate is judged (guarding the Stable revision), and
        // the one it replaced shows no more.
        eventually(&format!("only {name} shows"), TIMEOUT, || async {
            let text = operator.metrics_text().await.unwrap_or_default();
            let shown = gates_shown(&text, &ns.name, "m");
            if shown == [name.clone()] {
                Ok(())
            } else {
                Err(shown)
            }
        })
        .await;
    }

    delete(&mds, "m").await;
    eventually("no series of m", TIMEOUT, || async {
        let text = operator.metrics_text().await.unwrap_or_default();
        let left = series_of(&text, &ns.name, "m");
        let bystander = gates_shown(&text, &ns.name, "bystander");
        if left.is_empty() && bystander == ["gate-0"] {
            Ok(())
        } else {
            Err((left, bystander))
        }
    })
    .await;
}
