//! The operator binary as a real process, with the Helm chart's identity.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{eventually, free_port, identity, kubeconfig_path, repo_root};

/// The operator binary as a real process, watching one namespace. Killed when
/// dropped.
pub struct Operator {
    child: Option<Child>,
    pub namespace: String,
    pub log: PathBuf,
    args: Vec<String>,
    kubeconfig: PathBuf,
    /// Where `/metrics` listens (`--metrics-addr`).
    pub metrics_addr: String,
    /// Where `/healthz` and `/readyz` listen (`--health-addr`).
    pub health_addr: String,
}

impl Operator {
    /// Its endpoints on free ports of 127.0.0.1, so tests never collide.
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
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
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        single_team_unless_told(&mut args);
        let metrics_addr = flag_or_free_port(&mut args, "--metrics-addr");
        let health_addr = flag_or_free_port(&mut args, "--health-addr");
        // Plain /metrics on loopback for the tests that read it for other
        // reasons; tests/tenancy_metrics.rs asks for the secured one.
        if !args.iter().any(|a| a.starts_with("--metrics-auth")) {
            args.extend(["--metrics-auth".to_string(), "none".to_string()]);
        }
        let child = spawn_operator(namespace, &log, &args, kubeconfig);
        Self {
            child: Some(child),
            namespace: namespace.to_string(),
            log,
            args,
            kubeconfig: kubeconfig.to_path_buf(),
            metrics_addr,
            health_addr,
        }
    }

    /// The port of `/metrics`.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("--metrics-addr has a port")
    }

    /// The exposition text of `/metrics`; `None` when it does not answer.
    pub async fn metrics_text(&self) -> Option<String> {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// The sum of a metric's samples; `None` when `/metrics` does not answer.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics_text().await?;
        Some(
            text.lines()
                .filter(|l| l.starts_with(name) && !l.starts_with('#'))
                .filter(|l| l[name.len()..].starts_with([' ', '{']))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// Whether it holds the leader Lease; `None` when it does not answer.
    pub async fn leads(&self) -> Option<bool> {
        Some(self.metric("model_operator_leader").await? == 1.0)
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        reqwest::get(format!("http://{}/readyz", self.health_addr))
            .await
            .is_ok_and(|r| r.status().is_success())
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

    /// Waits until the log holds `text`; the failure shows the whole log.
    pub async fn wait_log(&self, text: &str, timeout: Duration) {
        let what = format!("the operator logs {text:?}");
        eventually(&what, timeout, || async {
            let logs = self.logs();
            if logs.contains(text) {
                Ok(())
            } else {
                Err(logs)
            }
        })
        .await
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

/// The flags that say where outbound requests may go (docs/security.md).
const OUTBOUND_FLAGS: [&str; 5] = [
    "--allowed-prometheus",
    "--allowed-alertmanager",
    "--allowed-webhook",
    "--allowed-endpoint",
    "--allow-any-endpoint",
];

/// Tests run a single-team cluster: the test's own stand-ins (on random
/// ports) are the only endpoints, so any address is allowed
/// (`--allow-any-endpoint`), unless the test sets where outbound requests
/// may go itself, as the tenancy tests do.
fn single_team_unless_told(args: &mut Vec<String>) {
    let told = args.iter().any(|a| {
        OUTBOUND_FLAGS
            .iter()
            .any(|f| a == f || a.starts_with(&format!("{f}=")))
    });
    if !told {
        args.push("--allow-any-endpoint".into());
    }
}

/// The value of `flag` in `args`; when absent, a free port of 127.0.0.1 is
/// picked and the flag added.
fn flag_or_free_port(args: &mut Vec<String>, flag: &str) -> String {
    if let Some(at) = args.iter().position(|a| a == flag)
        && let Some(value) = args.get(at + 1)
    {
        return value.clone();
    }
    let addr = format!("127.0.0.1:{}", free_port());
    args.extend([flag.to_string(), addr.clone()]);
    addr
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
