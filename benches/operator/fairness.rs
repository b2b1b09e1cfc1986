//! Whether one namespace's burst holds back another namespace's model
//! (issue 23, item 6): one cluster-wide operator (the default mode, one
//! controller for every namespace), N models created in one namespace and,
//! 5 s into that burst, a single model in a second namespace.
//!
//! Taken like `status_lag`, from the objects' own timestamps and condition
//! times (whole seconds), read once after the run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::{Api, Client};
use model_operator::api::ModelDeployment;
use serde_json::json;

use crate::convergence::{
    count_ready, create_models, delete_namespace, md_ready, median_and_spread, model, until_count,
};
use crate::report::Row;
use crate::status_lag::{self, TARGET, available_since, describe, ready_since, within_target};
use crate::support::{TestNamespace, free_port, kubeconfig_path, repo_root};

/// How far into the burst the second namespace's model is created.
const LATE: Duration = Duration::from_secs(5);

/// The operator binary watching the whole cluster, as the chart runs it by
/// default (the e2e support's operator always watches one namespace).
/// Killed when dropped.
struct ClusterWide {
    child: Child,
    port: u16,
}

impl ClusterWide {
    fn start(lease_namespace: &str) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let dir = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = std::fs::File::create(dir.join(format!("{lease_namespace}-cluster-wide.log")))
            .expect("operator log file");
        let err = log.try_clone().expect("log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_model-operator"))
            .args(["run", "--metrics-addr", &addr, "--health-addr", &addr])
            // Plain, on loopback: the bench reads it without a token.
            .args(["--metrics-auth", "none"])
            .args(["--log-format", "json"])
            .env_remove("WATCH_NAMESPACES")
            .env("KUBECONFIG", kubeconfig_path())
            .env("LEASE_NAMESPACE", lease_namespace)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start the operator binary");
        Self { child, port }
    }

    async fn until_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        while Instant::now() < deadline {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for ClusterWide {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The second namespace's model: its creation → its Deployment's creation,
/// and its Deployment's `Available=True` → its `Ready=True`, in seconds.
struct Late {
    to_deployment_s: f64,
    to_ready_s: f64,
}

async fn late_model(client: &Client, namespace: &str, name: &str) -> Option<Late> {
    let md = Api::<ModelDeployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .ok()?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .ok()?;
    let created = md.metadata.creation_timestamp.as_ref()?.0;
    let deployed = deployment.metadata.creation_timestamp.as_ref()?.0;
    let available = available_since(&deployment)?;
    Some(Late {
        to_deployment_s: deployed.duration_since(created).as_secs_f64(),
        to_ready_s: ready_since(&md)?.duration_since(available).as_secs_f64(),
    })
}

struct Run {
    late: Option<Late>,
    burst: Option<status_lag::Lags>,
}

async fn one_run(client: &Client, n: usize, round: usize, log_dir: &Path) -> Run {
    let burst = TestNamespace::new(client, &format!("bench-burst-{n}-{round}")).await;
    let other = TestNamespace::new(client, &format!("bench-other-{round}")).await;
    let op = ClusterWide::start(&burst.name);
    assert!(
        op.until_ready(Duration::from_secs(60)).await,
        "operator ready; log in {}",
        log_dir.display()
    );
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &burst.name);
    let others = Api::<ModelDeployment>::namespaced(client.clone(), &other.name);
    let (mut ready, mut other_ready) = (
        count_ready(mds.clone(), md_ready),
        count_ready(others.clone(), md_ready),
    );
    let late = tokio::spawn({
        let md = model("late", &other.name);
        async move {
            tokio::time::sleep(LATE).await;
            others.create(&PostParams::default(), &md).await
        }
    });
    create_models(&mds, n).await;
    assert!(
        matches!(late.await, Ok(Ok(_))),
        "second namespace's model created"
    );
    assert!(until_count(&mut ready, n).await, "burst: not all Ready");
    assert!(
        until_count(&mut other_ready, 1).await,
        "second namespace: not Ready"
    );
    let run = Run {
        late: late_model(client, &other.name, "late").await,
        burst: status_lag::measure(client, &burst.name).await,
    };
    drop(op);
    delete_namespace(&other).await;
    delete_namespace(&burst).await;
    run
}

pub async fn run(client: &Client, n: usize, runs: usize) -> Vec<Row> {
    let log_dir = repo_root().join("target/e2e-logs");
    let mut all = Vec::new();
    for round in 0..runs.max(1) {
        eprintln!(
            "bench: N={n}: a second namespace {LATE:?} into a burst, cluster-wide, run {}",
            round + 1
        );
        all.push(one_run(client, n, round, &log_dir).await);
    }
    let lates: Vec<&Late> = all.iter().filter_map(|r| r.late.as_ref()).collect();
    let what = format!(
        "N={n}, cluster-wide: one model in a second namespace created {} s into the burst: created → its Deployment; Deployment Available → Ready",
        LATE.as_secs()
    );
    let mut rows = Vec::new();
    if lates.is_empty() {
        rows.push(Row::new(
            what,
            "not measured: the objects could not be read",
        ));
    } else {
        let deploy: Vec<f64> = lates.iter().map(|l| l.to_deployment_s).collect();
        let ready: Vec<f64> = lates.iter().map(|l| l.to_ready_s).collect();
        let (deploy_median, deploy_text) = median_and_spread(&deploy, " s");
        let (ready_median, ready_text) = median_and_spread(&ready, " s");
        rows.push(
            Row::new(what, format!("{deploy_text}; {ready_text}"))
                .target(
                    "≤ 2 s; ≤ 2 s (median)",
                    deploy_median <= 2.0 && ready_median <= 2.0,
                )
                .data(json!({"n": n, "late_s": LATE.as_secs(),
                             "created_to_deployment_s": deploy, "available_to_ready_s": ready})),
        );
    }
    let lags: Vec<f64> = all
        .iter()
        .filter_map(|r| r.burst.as_ref())
        .flat_map(|l| l.per_model.iter().copied())
        .collect();
    let what = format!(
        "N={n}, cluster-wide: the burst's Deployment Available → ModelDeployment Ready, per model"
    );
    rows.push(if lags.is_empty() {
        Row::new(what, "not measured: the objects could not be listed")
    } else {
        let over_5s = lags.iter().filter(|lag| **lag > 5.0).count();
        Row::new(
            what,
            format!("{}, {over_5s} of {} over 5 s", describe(&lags), lags.len()),
        )
        .target(TARGET, within_target(&lags))
        .data(json!({"n": n, "models": lags.len(), "over_5s": over_5s}))
    });
    rows
}
