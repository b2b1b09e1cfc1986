//! Shared end-to-end test support: a client for the local cluster, one
//! namespace per test, waits with deadlines and readable failures, and the
//! operator as a real process.
#![allow(dead_code)] // each test binary uses its own part of the support

pub mod fakes;
pub mod gates;
pub mod helm;
pub mod identity;

use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, CustomResourceExt, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use model_operator::api::ModelDeployment;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$KUBECONFIG` when set, else the one `make cluster-up` writes.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local/kubeconfig"))
}

pub async fn client() -> Client {
    client_from(&kubeconfig_path()).await
}

/// A client with the identity of the given kubeconfig's current context.
pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| {
        panic!(
            "no kubeconfig at {}: start the local cluster with `make cluster-up` ({e})",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client from kubeconfig")
}

/// A fresh namespace, deleted (without waiting) when the test ends. A failed
/// test's namespace is deleted too; its objects are printed by `wait_for`.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        Self::with_labels(client, prefix, serde_json::json!({})).await
    }

    pub async fn with_labels(client: &Client, prefix: &str, labels: serde_json::Value) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut prefix: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        prefix.truncate(40);
        let name = format!(
            "{prefix}-{:x}{n:x}",
            (nanos ^ std::process::id()) & 0xffffff
        )
        .to_lowercase();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_NAMESPACES").is_some() {
            eprintln!("keeping namespace {}", self.name);
            return;
        }
        // Drop cannot await; kubectl returns at once with --wait=false.
        let _ = kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// Polls until `ready` holds, or panics after `timeout` with the object's
/// last state, so a failure explains itself.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    ready: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    let start = Instant::now();
    let mut last: Option<Result<K, String>> = None;
    while start.elapsed() < timeout {
        match api.get_opt(name).await {
            Ok(Some(obj)) if ready(&obj) => return obj,
            Ok(Some(obj)) => last = Some(Ok(obj)),
            Ok(None) => last = Some(Err("not found".into())),
            Err(e) => last = Some(Err(e.to_string())),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let state = match last {
        Some(Ok(obj)) => {
            serde_yaml::to_string(&obj).unwrap_or_else(|e| format!("<unprintable: {e}>"))
        }
        Some(Err(e)) => e,
        None => "never read".into(),
    };
    panic!("timed out after {timeout:?} waiting for {kind} {name} to {what}; last state:\n{state}");
}

/// Waits until the object is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{name} still exists after {timeout:?}");
}

/// Installs (or updates) the CRD from the code, and waits until established.
pub async fn ensure_crd(client: &Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = ModelDeployment::crd();
    let name = crd.metadata.name.clone().expect("crd name");
    api.patch(
        &name,
        &PatchParams::apply("model-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    wait_for(
        &api,
        &name,
        "be established",
        Duration::from_secs(30),
        |crd| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
    )
    .await;
}

/// The smallest valid ModelDeployment: model 1.0 on image srv:1.
pub fn minimal_model(name: &str) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
        "spec": {"model": {"version": "1.0"}, "server": {"image": "srv:1"}},
    }))
    .expect("ModelDeployment")
}

/// Runs the real kubectl (the pinned one) against the test cluster.
pub fn kubectl(args: &[&str]) -> Output {
    run_tool("kubectl", args)
}

/// Runs a pinned tool from .local/bin (else from PATH) against the test
/// cluster.
pub fn run_tool(name: &str, args: &[&str]) -> Output {
    let bin = repo_root().join(".local/bin").join(name);
    Command::new(if bin.exists() {
        bin
    } else {
        PathBuf::from(name)
    })
    .args(args)
    .env("KUBECONFIG", kubeconfig_path())
    .output()
    .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// The operator binary as a real process, watching one namespace. Killed when
/// dropped.
pub struct Operator {
    child: Option<Child>,
    pub namespace: String,
    pub log: PathBuf,
    args: Vec<String>,
    kubeconfig: PathBuf,
}

impl Operator {
    /// Its endpoints on ports the system picks, so tests never collide.
    pub fn start(namespace: &str) -> Self {
        Self::start_with(
            namespace,
            &[
                "--metrics-addr",
                "127.0.0.1:0",
                "--health-addr",
                "127.0.0.1:0",
            ],
        )
    }

    pub fn start_with(namespace: &str, args: &[&str]) -> Self {
        Self::start_replica(namespace, "", args)
    }

    /// One of several replicas in a namespace, each with its own log file
    /// (`replica` names it; empty for the only one).
    pub fn start_replica(namespace: &str, replica: &str, args: &[&str]) -> Self {
        let kubeconfig = operator_kubeconfig();
        if kubeconfig != kubeconfig_path() {
            identity::grant_leader_election(
                identity::E2E_NAMESPACE,
                identity::E2E_RELEASE,
                namespace,
            );
        }
        Self::spawn(&kubeconfig, namespace, replica, args)
    }

    /// With the given kubeconfig's identity instead of the chart's
    /// ServiceAccount.
    pub fn start_as(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Self {
        Self::spawn(kubeconfig, namespace, "", args)
    }

    fn spawn(kubeconfig: &Path, namespace: &str, replica: &str, args: &[&str]) -> Self {
        let log_dir = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let suffix = if replica.is_empty() {
            String::new()
        } else {
            format!("-{replica}")
        };
        let log = log_dir.join(format!("{namespace}{suffix}.log"));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn_operator(namespace, &log, &args, kubeconfig);
        Self {
            child: Some(child),
            namespace: namespace.to_string(),
            log,
            args,
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    /// SIGKILL: no shutdown code runs, as when a node dies.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`TERM`, `STOP`, `CONT`, ...) with the real kill(1).
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the operator is running");
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to end by itself; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().expect("the operator was started");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the operator") {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "the operator still runs after {timeout:?}; log {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_operator(
            &self.namespace,
            &self.log,
            &self.args,
            &self.kubeconfig,
        ));
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The kubeconfig operator processes run with: the Helm chart's
/// ServiceAccount (written by hack/operator-identity.sh, which `make test`
/// runs), so every end-to-end test also shows the chart's RBAC is enough.
/// `make test` sets `OPERATOR_KUBECONFIG`, which makes it mandatory; without
/// it a missing or stale file falls back to the admin kubeconfig, and the
/// operator's log says so.
pub fn operator_kubeconfig() -> PathBuf {
    if let Some(path) = std::env::var_os("OPERATOR_KUBECONFIG").map(PathBuf::from) {
        if let Err(why) = identity::usable(&path) {
            panic!("OPERATOR_KUBECONFIG: {why}; run hack/operator-identity.sh");
        }
        return path;
    }
    let path = repo_root().join(".local/operator-kubeconfig");
    match identity::usable(&path) {
        Ok(()) => path,
        Err(why) => {
            eprintln!(
                "e2e: {why}: the operator runs with the admin kubeconfig, not the Helm chart's \
                 ServiceAccount (run hack/operator-identity.sh, or make test)"
            );
            kubeconfig_path()
        }
    }
}

fn spawn_operator(namespace: &str, log: &Path, args: &[String], kubeconfig: &Path) -> Child {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("operator log file");
    // Which identity the operator had is the first question when it is
    // refused something.
    let _ = writeln!(out, "e2e: operator runs with {}", kubeconfig.display());
    let err = out.try_clone().expect("log handle");
    Command::new(env!("CARGO_BIN_EXE_model-operator"))
        .args(["run", "--namespace", namespace])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        // A Lease per test namespace, so tests running at once do not elect
        // one leader among them (--lease-namespace overrides it).
        .env("LEASE_NAMESPACE", namespace)
        .env(
            "RUST_LOG",
            std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start the operator binary")
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Deletes an object, ignoring "not found".
pub async fn delete<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("delete {name}: {e}"),
    }
}

/// A tiny Prometheus exporter on 127.0.0.1 whose exposition text the test
/// sets, for Prometheus to scrape.
pub struct Exporter {
    pub port: u16,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub async fn start(initial: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind exporter");
        let port = listener.local_addr().expect("exporter addr").port();
        let body = std::sync::Arc::new(std::sync::Mutex::new(initial.to_string()));
        let shared = body.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let text = shared.lock().map(|b| b.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { port, body, task }
    }

    pub fn set(&self, text: &str) {
        if let Ok(mut b) = self.body.lock() {
            *b = text.to_string();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the local Prometheus (hack/monitoring.sh) listens: port 19090, or
/// `PROMETHEUS_PORT` as for hack/monitoring.sh.
pub fn prometheus() -> String {
    let port = std::env::var("PROMETHEUS_PORT").unwrap_or_else(|_| "19090".into());
    format!("http://127.0.0.1:{port}")
}

/// Registers a scrape target with the local Prometheus (file-based service
/// discovery); removed when dropped.
pub struct ScrapeTarget {
    path: PathBuf,
}

impl ScrapeTarget {
    pub fn add(job: &str, port: u16, labels: serde_json::Value) -> Self {
        let dir = repo_root().join(".local/monitoring/targets");
        std::fs::create_dir_all(&dir).expect("targets dir");
        let path = dir.join(format!("{job}.json"));
        let mut all_labels = labels;
        all_labels["job"] = serde_json::json!(job);
        let doc =
            serde_json::json!([{"targets": [format!("127.0.0.1:{port}")], "labels": all_labels}]);
        // Write then rename, so Prometheus never reads half a file.
        let tmp = dir.join(format!(".{job}.json.tmp"));
        std::fs::write(&tmp, doc.to_string()).expect("write target");
        std::fs::rename(&tmp, &path).expect("publish target");
        Self { path }
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs an instant query; `None` when the result is empty.
pub async fn prometheus_query(query: &str) -> Result<Option<f64>, String> {
    let prometheus = prometheus();
    let response: serde_json::Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .map_err(|e| {
            format!(
                "Prometheus at {prometheus} did not answer (is `make monitoring-up` running?): {e}"
            )
        })?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if response["status"] != "success" {
        return Err(format!("query failed: {response}"));
    }
    Ok(response["data"]["result"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse().ok()))
}

/// One line of the operator's request counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Requests {
    pub verb: String,
    pub resource: String,
    pub count: f64,
}

/// The operator's `model_operator_api_requests_total` series, read from its
/// `/metrics` on 127.0.0.1:`port`.
pub async fn operator_requests(port: u16) -> Result<Vec<Requests>, String> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    Ok(parse_requests(&text))
}

pub fn parse_requests(text: &str) -> Vec<Requests> {
    parse_counter(text, "model_operator_api_requests_total")
}

/// The API server's own `apiserver_request_total`, summed by verb and
/// resource (with its subresource, e.g. `modeldeployments/status`): every
/// client's requests, the operator's, the controllers' and kwok's alike.
pub async fn apiserver_requests(client: &kube::Client) -> Result<Vec<Requests>, String> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(parse_counter(&text, "apiserver_request_total"))
}

/// A counter's series with `verb` and `resource` (and `subresource`)
/// labels, summed by verb and resource.
fn parse_counter(text: &str, metric: &str) -> Vec<Requests> {
    let label = |labels: &str, name: &str| {
        labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_default()
    };
    let mut out: Vec<Requests> = Vec::new();
    let series = text
        .lines()
        .filter_map(|line| line.strip_prefix(metric)?.strip_prefix('{'))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let sub = label(labels, "subresource");
            let resource = match sub.as_str() {
                "" => label(labels, "resource"),
                sub => format!("{}/{sub}", label(labels, "resource")),
            };
            Some((
                label(labels, "verb"),
                resource,
                value.trim().parse::<f64>().ok()?,
            ))
        });
    for (verb, resource, count) in series {
        match out
            .iter_mut()
            .find(|r| r.verb == verb && r.resource == resource)
        {
            Some(r) => r.count += count,
            None => out.push(Requests {
                verb,
                resource,
                count,
            }),
        }
    }
    out
}

/// Requests counted in `after` but not yet in `before`, by verb and resource.
pub fn requests_between(before: &[Requests], after: &[Requests]) -> Vec<Requests> {
    after
        .iter()
        .filter_map(|a| {
            let earlier = before
                .iter()
                .find(|b| b.verb == a.verb && b.resource == a.resource)
                .map_or(0.0, |b| b.count);
            (a.count > earlier).then(|| Requests {
                count: a.count - earlier,
                ..a.clone()
            })
        })
        .collect()
}

/// How revision `revision` of `m` ended (or that it is still rolling out),
/// from its status history.
pub fn outcome_of(m: &ModelDeployment, revision: i64) -> Option<model_operator::api::Outcome> {
    m.status
        .as_ref()?
        .history
        .iter()
        .find(|e| e.revision == revision)
        .map(|e| e.outcome)
}

/// Creates ModelDeployment `m` (version 1 on `srv:1`, 2 replicas, a 600 s
/// progress deadline) and waits until revision 1 is stable.
pub async fn create_stable_m(mds: &Api<ModelDeployment>) {
    let md: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
        "spec": {"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 2,
                 "rollout": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 600}},
    }))
    .expect("manifest");
    mds.create(&PostParams::default(), &md)
        .await
        .expect("create m");
    wait_for(
        mds,
        "m",
        "make revision 1 stable",
        Duration::from_secs(120),
        |m| outcome_of(m, 1) == Some(model_operator::api::Outcome::Stable),
    )
    .await;
}

/// A shipped example manifest passes the API server's validation (a
/// server-side dry run in a namespace of its own).
pub async fn assert_example_accepted(prefix: &str, example: &str) {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let file = repo_root().join(example);
    let out = kubectl(&[
        "-n",
        &ns.name,
        "apply",
        "--dry-run=server",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
