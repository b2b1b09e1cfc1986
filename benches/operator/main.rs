//! The operator's benchmark suite, against the local control plane
//! (`make cluster-up`): convergence of N ModelDeployments against a
//! plain-client floor, API quietness when converged, memory, restart,
//! single-object latency and rollback latency (crash-loop and failing metric
//! check; the latter needs `make monitoring-up`) and the GPU scenario
//! (benches/operator/gpu.rs). Figures are printed as a
//! table and written to `.local/bench/operator.json`; nothing is asserted
//! about them.
//!
//! `make bench` runs it in full (`cargo bench` passes `--bench`). Run by
//! `cargo test` (CI) it is a quick, CI-sized pass (N=100, short windows) on
//! the debug build whose figures only show that every part still works.
//!
//! Environment: BENCH_N (comma-separated sizes; full: 100,1000),
//! BENCH_QUIET_SECS (full: 300), BENCH_RUNS (interleaved floor and operator
//! runs per size; full: 3), BENCH_APPLIES (200), BENCH_ROLLBACKS (20),
//! BENCH_ONLY (comma-separated parts: index, convergence, fairness, latency,
//! rollback, canary, gpu, spec-memory, template-size), BENCH_SPEC_REVISIONS (30),
//! BENCH_SKIP_LAST_DELETE (set: leave the last operator namespace for the
//! cluster's deletion; `make bench-stretch`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

#[path = "../../tests/support/mod.rs"]
mod support;

mod canary_abort;
mod convergence;
mod fairness;
mod gpu;
mod index;
mod latency;
mod metric_rollback;
mod probe;
mod report;
mod rollback;
mod spec_memory;
mod status_lag;
mod template_size;

use std::time::Duration;

use serde_json::json;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// "2 cores, 23.4 GiB", from this machine.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    format!(
        "{cores} cores, {:.1} GiB, kwok-simulated nodes",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("BENCH_N")
        .unwrap_or_else(|_| if full { "100,1000" } else { "100" }.into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let quiet = Duration::from_secs(env_or("BENCH_QUIET_SECS", if full { 300 } else { 10 }));
    let applies = env_or("BENCH_APPLIES", if full { 200 } else { 20 });
    let rounds = env_or("BENCH_ROLLBACKS", if full { 20 } else { 3 });
    let runs = env_or("BENCH_RUNS", if full { 3 } else { 1 });
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only.split(',').any(|p| p.trim() == name);
    let build = if full {
        "release"
    } else {
        "debug (CI-sized run; figures not comparable)"
    };
    eprintln!(
        "bench: {} on {}, operator build {build}",
        sizes
            .iter()
            .map(|n| format!("N={n}"))
            .collect::<Vec<_>>()
            .join(", "),
        machine()
    );

    let client = support::client().await;
    support::ensure_crd(&client).await;
    let mut rows = Vec::new();
    // Each figure is printed as soon as it is measured, so a run that fails
    // late still shows what it measured.
    let mut emit = |new: Vec<report::Row>| {
        for r in &new {
            eprintln!("bench: | {} | {} |", r.what, r.figure);
        }
        rows.extend(new);
    };
    if part("index") {
        emit(sizes.iter().map(|&n| index::run(n)).collect());
    }
    if part("convergence") {
        for &n in &sizes {
            let settings = convergence::Settings { n, quiet, runs };
            emit(convergence::run(&client, &settings).await);
        }
    }
    if part("fairness") {
        for &n in &sizes {
            emit(fairness::run(&client, n, runs).await);
        }
    }
    if part("latency") {
        emit(latency::run(&client, applies).await);
    }
    if part("rollback") {
        emit(rollback::run(&client, rounds).await);
        emit(vec![metric_rollback::run(&client, rounds).await]);
    }
    if part("canary") {
        emit(vec![canary_abort::run(&client, rounds).await]);
    }
    if part("gpu") {
        emit(gpu::run(&client, if full { 4 } else { 2 }).await);
    }
    if part("spec-memory") {
        emit(
            spec_memory::run(
                &client,
                env_or("BENCH_SPEC_REVISIONS", if full { 30 } else { 5 }),
            )
            .await,
        );
    }

    if part("template-size")
        && let Some(&n) = sizes.iter().max()
    {
        emit(template_size::run(&client, n).await);
    }

    println!(
        "\nmodel-operator benchmarks: {}, operator build {build}",
        machine()
    );
    report::print(&rows);
    if full {
        let dir = support::repo_root().join(".local/bench");
        std::fs::create_dir_all(&dir).expect("bench dir");
        let path = dir.join("operator.json");
        let doc = json!({"machine": machine(), "sizes": sizes, "quiet_window_s": quiet.as_secs(),
                         "rows": report::to_json(&rows)});
        std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json"))
            .expect("write report");
        println!("\nwritten to {}", path.display());
    }
}
