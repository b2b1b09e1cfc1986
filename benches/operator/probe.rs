//! What the bench reads from the operator process: its memory from /proc,
//! its readiness, reconcile and request counters from its own endpoints.

use std::time::{Duration, Instant};

use crate::support::{Operator, Requests, operator_requests};

/// An operator with its metrics and probes on one known port.
pub struct Probed {
    pub operator: Operator,
    pub port: u16,
    pub started: Instant,
}

impl Probed {
    /// Logs as JSON, so the bench can tell which objects were reconciled.
    pub fn start(namespace: &str) -> Self {
        let port = crate::support::free_port();
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let operator = Operator::start_with(
            namespace,
            &[
                "--metrics-addr",
                &addr,
                "--health-addr",
                &addr,
                "--log-format",
                "json",
            ],
        );
        Self {
            operator,
            port,
            started,
        }
    }

    /// Stops this process with SIGTERM (so it hands its leader Lease over
    /// instead of making the next one wait for it to expire) and starts a
    /// fresh one on the same port.
    pub async fn restart(&mut self) {
        if let Some(pid) = self.operator.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            // Exited but not yet reaped shows as a zombie ("Z").
            while Instant::now() < deadline
                && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.started = Instant::now();
        self.operator.restart();
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// Waits until `/readyz` says the caches are synced; the time since start.
    pub async fn until_ready(&self, timeout: Duration) -> Option<Duration> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some((200, _)) = self.get("/readyz").await {
                return Some(self.started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub async fn requests(&self) -> Vec<Requests> {
        operator_requests(self.port).await.unwrap_or_default()
    }

    /// Reconciles so far, whatever their outcome.
    pub async fn reconciles(&self) -> f64 {
        let Some((_, text)) = self.get("/metrics").await else {
            return 0.0;
        };
        text.lines()
            .filter(|l| l.starts_with("model_operator_reconciles_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn memory(&self) -> Option<(u64, u64)> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.operator.pid()?)).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// CPU seconds the process has used (user + system).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.operator.pid()?)).ok()?;
        // Fields after the command name, which is in parentheses and may
        // hold spaces: utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')')?.1;
        let mut fields = after.split_whitespace().skip(11);
        let utime: f64 = fields.next()?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        // Linux reports both in USER_HZ, 100 on every architecture it runs.
        Some((utime + stime) / 100.0)
    }
}

/// The leader-election Lease's renewals: the price of leader election, not
/// of the ModelDeployments, so reported but not counted against "quiet".
fn lease(r: &Requests) -> bool {
    r.resource == "leases"
}

/// Requests that write, besides the Lease's.
pub fn writes(requests: &[Requests]) -> u64 {
    requests
        .iter()
        .filter(|r| !lease(r) && model_operator::client::is_write(&r.verb))
        .map(|r| r.count as u64)
        .sum()
}

/// Requests other than (re)opened watches and the Lease's.
pub fn non_watch(requests: &[Requests]) -> u64 {
    requests
        .iter()
        .filter(|r| !lease(r) && r.verb != "watch")
        .map(|r| r.count as u64)
        .sum()
}

/// "verb resource ×n" for a report.
pub fn describe(requests: &[Requests]) -> String {
    if requests.is_empty() {
        return "none".into();
    }
    requests
        .iter()
        .map(|r| format!("{} {} ×{}", r.verb, r.resource, r.count))
        .collect::<Vec<_>>()
        .join(", ")
}
