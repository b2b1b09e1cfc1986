//! Cleanup (issue 11, docs/security.md "Cleanup"): 500 ModelDeployments
//! with metric gates come and go, and everything the operator held for them
//! goes with them: every cache and per-object map
//! (`model_operator_state_entries`) and every metric series of their
//! namespace return to where they were before. The process's RSS is
//! printed, not asserted (a freed heap is not always returned to the
//! system; `make bench` owns memory figures).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use model_operator::api::ModelDeployment;
use serde_json::json;
use support::*;

const N: usize = 500;

/// The operator's `/metrics`; empty while it does not answer yet (it
/// binds its port a moment after it starts), which no probe accepts.
async fn metrics_text(metrics_addr: &str) -> String {
    match reqwest::get(format!("http://{metrics_addr}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Series labelled with `namespace`.
fn series_of(text: &str, namespace: &str) -> Vec<String> {
    let label = format!("namespace=\"{namespace}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(str::to_string)
        .collect()
}

/// `model_operator_state_entries` by kind.
fn state_entries(text: &str) -> BTreeMap<String, i64> {
    text.lines()
        .filter(|l| l.starts_with("model_operator_state_entries{"))
        .filter_map(|l| {
            let kind = l.split("kind=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((kind.to_string(), value))
        })
        .collect()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::test]
async fn what_500_deleted_model_deployments_held_goes_with_them() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "tenancy-cleanup").await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let operator = Operator::start_with(
        &ns.name,
        &[
            "--metrics-addr",
            &metrics_addr,
            "--health-addr",
            "127.0.0.1:0",
        ],
    );
    let pid = operator.pid().expect("the operator runs");
    let (port, _seen, task) = support::fakes::fake_prometheus("0.01").await;
    let analysis = support::gates::analysis(
        json!({"prometheus": {"address": format!("http://127.0.0.1:{port}"), "timeoutSeconds": 2}}),
        0.05,
        None,
    );

    let baseline = eventually(
        "the first state sample",
        Duration::from_secs(60),
        || async {
            let entries = state_entries(&metrics_text(&metrics_addr).await);
            entries.contains_key("cached_pods").then_some(entries)
        },
    )
    .await;
    let rss_before = rss_mib(pid);

    for i in 0..N {
        let md = model(
            &format!("m{i}"),
            json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}, "replicas": 1,
                "rollout": {"analysis": analysis.clone()}}),
        );
        mds.create(&PostParams::default(), &md)
            .await
            .expect("create");
    }
    // Every one is cached with its children, has its phase and
    // analysed-value series, and was judged by a metric round.
    let held = eventually(
        "every ModelDeployment analysed",
        Duration::from_secs(600),
        || async {
            let text = metrics_text(&metrics_addr).await;
            let series = series_of(&text, &ns.name);
            let values = series
                .iter()
                .filter(|l| l.starts_with("model_operator_analysis_value"))
                .count();
            let entries = state_entries(&text);
            let cached = |kind: &str| entries.get(kind).copied().unwrap_or(0);
            let all = values == N
                && cached("cached_modeldeployments") == N as i64
                && cached("cached_pods") == N as i64;
            if all {
                Ok(entries)
            } else {
                Err(format!("{values} analysed, entries {entries:?}"))
            }
        },
    )
    .await;
    let rss_held = rss_mib(pid);

    mds.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete all");
    // Their children are garbage collected by the cluster; every entry and
    // series goes back to the baseline.
    let after = eventually(
        "everything back to the baseline",
        Duration::from_secs(600),
        || async {
            let text = metrics_text(&metrics_addr).await;
            let series = series_of(&text, &ns.name);
            let entries = state_entries(&text);
            if series.is_empty() && entries == baseline {
                Ok(entries)
            } else {
                Err(format!(
                    "{} series left (e.g. {:?}); entries {entries:?}, baseline {baseline:?}",
                    series.len(),
                    series.first()
                ))
            }
        },
    )
    .await;
    println!(
        "operator RSS: {rss_before:.1} MiB before, {rss_held:.1} MiB holding {N}, {:.1} MiB after; \
         entries holding {N}: {held:?}; after: {after:?}",
        rss_mib(pid)
    );
    task.abort();
}
