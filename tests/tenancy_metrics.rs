//! `/metrics` reveals nothing to the wrong reader, and nothing of what is
//! gone (issue 24, docs/security.md "The operator's /metrics"): secured as
//! the chart installs it, it refuses a reader without a token (401) and one
//! whose user may not `get /metrics` (403), and serves a ServiceAccount
//! bound to the chart's metrics-reader ClusterRole, over HTTPS only; a gate
//! renamed 20 times and then its ModelDeployment deleted leave no series.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use model_operator::api::ModelDeployment;
use serde_json::{Value, json};
use support::helm::Release;
use support::identity::{service_account_kubeconfig, wait_authorized};
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

/// A fresh token of a ServiceAccount in `namespace` (created when missing).
fn token_of(namespace: &str, name: &str) -> String {
    let _ = kubectl(&["-n", namespace, "create", "serviceaccount", name]);
    let out = kubectl(&["-n", namespace, "create", "token", name, "--duration", "1h"]);
    assert!(
        out.status.success(),
        "kubectl create token {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("token")
        .trim()
        .to_string()
}

/// Status and body of `/metrics` over HTTPS (the certificate is the
/// self-signed one the operator made at start: not verified, as by the
/// chart's ServiceMonitor), with this bearer token; `None` while it does
/// not answer.
async fn scrape(addr: &str, token: Option<&str>) -> Option<(u16, String)> {
    // reqwest is built without a default crypto provider (the operator
    // picks ring); tests pick it too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("HTTPS client");
    let mut request = client.get(format!("https://{addr}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// The sum of a counter's samples with these labels in an exposition.
fn counted(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_refuse_anonymous_and_unauthorised_readers_and_serve_the_charts_reader() {
    let admin = client().await;
    ensure_crd(&admin).await;
    let ns = TestNamespace::new(&admin, "metrics-readers").await;
    let n = ns.name.as_str();
    // The chart as installed (metrics.secure defaults to true), its RBAC
    // for the operator, and `reader` bound to its metrics-reader role.
    let reader_namespace = format!("metrics.readers[0].namespace={n}");
    let _release = Release::identity(n, &[&reader_namespace, "metrics.readers[0].name=reader"]);
    let (reader, stranger) = (token_of(n, "reader"), token_of(n, "stranger"));
    let operator_user = format!("system:serviceaccount:{n}:model-operator");
    wait_authorized(
        &operator_user,
        &["create", "tokenreviews.authentication.k8s.io"],
    );
    wait_authorized(
        &format!("system:serviceaccount:{n}:reader"),
        &["get", "/metrics"],
    );
    let kubeconfig = service_account_kubeconfig(n, "model-operator");
    let operator = Operator::start_as(&kubeconfig, n, &["--metrics-auth", "kubernetes"]);
    let addr = operator.metrics_addr.clone();

    // The chart's reader gets the metrics, once the endpoint is up.
    let text = eventually("the reader scrapes /metrics", TIMEOUT, || async {
        match scrape(&addr, Some(&reader)).await {
            Some((200, text)) => Ok(text),
            other => Err(other),
        }
    })
    .await;
    assert!(text.contains("model_operator_leader"), "{text}");

    for (who, token, status) in [
        ("no token", None, 401),
        (
            "a token the API server does not know",
            Some("not-a-token"),
            401,
        ),
        (
            "a ServiceAccount without the reader role",
            Some(stranger.as_str()),
            403,
        ),
    ] {
        let got = scrape(&addr, token).await.map(|(s, _)| s);
        assert_eq!(got, Some(status), "{who}");
    }
    // Never in clear: plain HTTP gets no metrics.
    let plain = reqwest::get(format!("http://{addr}/metrics")).await;
    let leaked = match plain {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    assert!(!leaked.contains("model_operator_"), "{leaked}");

    // Reviews are cached: more scrapes with the same token within the
    // cache period (2 minutes) send no further TokenReview.
    let reviews = |text: &str| {
        counted(
            text,
            "model_operator_api_requests_total",
            r#"resource="tokenreviews""#,
        )
    };
    let (_, before) = scrape(&addr, Some(&reader)).await.expect("scrape");
    for _ in 0..5 {
        scrape(&addr, Some(&reader)).await.expect("scrape");
    }
    let (_, after) = scrape(&addr, Some(&reader)).await.expect("scrape");
    assert!(reviews(&before) >= 1.0, "{before}");
    assert_eq!(reviews(&after), reviews(&before), "{after}");
}
