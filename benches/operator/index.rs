//! The reconcile's lookup of one ModelDeployment's pods and revisions, as a
//! resync of N objects does it N times: through the instance index, against
//! the whole-cache scan it replaced (re-implemented here for the comparison).
//! Pure CPU, no cluster.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use model_operator::cache::index::indexed_store;
use model_operator::resources::labels::INSTANCE;
use serde_json::json;

use crate::report::Row;

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({"metadata": {
        "namespace": "bench", "name": format!("m{i}-pod"),
        "labels": {INSTANCE: format!("m{i}")},
    }}))
    .expect("pod")
}

pub fn run(n: usize) -> Row {
    let (indexed, mut writer) = indexed_store::<Pod>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in 0..n {
        writer.apply_watcher_event(&watcher::Event::InitApply(pod(i)));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);

    let start = Instant::now();
    let mut found = 0;
    for i in 0..n {
        found += indexed.of_instance("bench", &format!("m{i}")).len();
    }
    let index_ms = start.elapsed().as_secs_f64() * 1000.0;

    let start = Instant::now();
    let mut scanned = 0;
    for i in 0..n {
        let instance = format!("m{i}");
        let hits: Vec<Arc<Pod>> = indexed
            .store
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some("bench")
                    && p.metadata.labels.as_ref().and_then(|l| l.get(INSTANCE)) == Some(&instance)
            })
            .collect();
        scanned += hits.len();
    }
    let scan_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(found, scanned, "index and scan disagree");
    Row::new(
        format!("N={n}: pod lookups of one resync (×{n}), index vs scan"),
        format!("{index_ms:.1} ms vs {scan_ms:.1} ms"),
    )
    .data(json!({"n": n, "index_ms": index_ms, "scan_ms": scan_ms}))
}
