//! Single-object latency: a ModelDeployment created → its Deployment and
//! Service exist, seen by this program's own watch (started before), one
//! object at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use model_operator::api::ModelDeployment;
use serde_json::json;

use crate::convergence::delete_namespace;
use crate::probe::Probed;
use crate::report::{Row, percentile, sorted};
use crate::support::TestNamespace;

/// When each child (by kind and name) was first seen.
type Seen = Arc<Mutex<HashMap<(&'static str, String), Instant>>>;

fn record<K>(api: Api<K>, kind: &'static str, seen: Seen)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            if let Ok(obj) = event
                && let Ok(mut seen) = seen.lock()
            {
                seen.entry((kind, obj.name_any()))
                    .or_insert_with(Instant::now);
            }
        }
    });
}

pub async fn run(client: &Client, applies: usize) -> Vec<Row> {
    eprintln!("bench: single-object latency over {applies} creates");
    let ns = TestNamespace::new(client, "bench-latency").await;
    let op = Probed::start(&ns.name);
    op.until_ready(Duration::from_secs(60))
        .await
        .expect("operator ready");
    let seen: Seen = Arc::default();
    record(
        Api::<Deployment>::namespaced(client.clone(), &ns.name),
        "Deployment",
        seen.clone(),
    );
    record(
        Api::<Service>::namespaced(client.clone(), &ns.name),
        "Service",
        seen.clone(),
    );
    // Let both watches finish their initial list.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let mut samples = Vec::new();
    for i in 0..applies {
        let name = format!("l{i}");
        let md: ModelDeployment = serde_json::from_value(json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1},
        }))
        .expect("manifest");
        let start = Instant::now();
        mds.create(&PostParams::default(), &md)
            .await
            .expect("create");
        let deadline = start + Duration::from_secs(30);
        while Instant::now() < deadline {
            let done = seen.lock().ok().and_then(|s| {
                let d = s.get(&("Deployment", name.clone()))?;
                let svc = s.get(&("Service", name.clone()))?;
                Some((*d).max(*svc))
            });
            if let Some(at) = done {
                samples.push(at.duration_since(start).as_secs_f64() * 1000.0);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    drop(op);
    delete_namespace(&ns).await;
    let s = sorted(samples.clone());
    let (p50, p99) = (percentile(&s, 0.5), percentile(&s, 0.99));
    vec![
        Row::new(
            format!("create → Deployment and Service exist ({} of {applies})", s.len()),
            format!("p50 {p50:.0} ms, p99 {p99:.0} ms"),
        )
        .data(json!({"applies": applies, "measured": s.len(), "p50_ms": p50, "p99_ms": p99, "samples_ms": samples})),
    ]
}
