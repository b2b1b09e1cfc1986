//! The real local Prometheus: scrape targets the tests add, an exporter
//! whose values they set, and instant queries.

use std::path::PathBuf;
use std::time::Duration;

use super::{eventually, repo_root};

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

/// Waits until Prometheus answers `query` with `want` (`None`: an empty
/// result), e.g. until it has scraped what an exporter now serves. An error
/// of Prometheus is retried like a wrong value, and shown if it persists.
pub async fn prometheus_sees(query: &str, want: Option<f64>, timeout: Duration) {
    eventually(
        &format!("Prometheus sees {query} = {want:?}"),
        timeout,
        || async {
            match prometheus_query(query).await {
                Ok(got) if got == want => Ok(()),
                other => Err(other),
            }
        },
    )
    .await
}

/// Whether the local Prometheus answers `/-/ready` with 200: every hostile
/// test ends by asserting it is still up.
pub async fn prometheus_ready() -> bool {
    crypto_provider();
    reqwest::get(format!("{}/-/ready", prometheus()))
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The value of one of the local Prometheus's command-line flags, e.g.
/// `web.enable-lifecycle` (which makes `POST /-/quit` stop it).
pub async fn prometheus_flag(name: &str) -> Option<String> {
    crypto_provider();
    let flags: serde_json::Value = reqwest::get(format!("{}/api/v1/status/flags", prometheus()))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    flags["data"][name].as_str().map(str::to_string)
}

/// reqwest is built without a crypto provider (as in the operator); the
/// kube client installs ring, but these may run before any kube client.
fn crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
