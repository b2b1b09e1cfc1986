//! Memory and writes against the size of the pod template (issue 25): N
//! models with the sample spec, then N with a vLLM-sized one (the vLLM
//! example's pod: args, env, probes, volumes, security context, shm), each
//! on a fresh operator. The caches keep what decisions read, not the
//! template, so converged RSS must stay within 10 % and the writes per model
//! must not change.

use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use model_operator::api::ModelDeployment;
use serde_json::{Value, json};

use crate::convergence::{count_ready, create_all, delete_namespace, md_ready, until_count};
use crate::probe::{Probed, writes};
use crate::report::Row;
use crate::support::*;

fn sample() -> Value {
    json!({"model": {"version": "1"}, "server": {"image": "srv:1"}, "replicas": 1})
}

/// The vLLM example's spec, made schedulable by the hundreds on the bench's
/// nodes (no GPU, small requests, an emptyDir for the weights' PVC), one
/// replica like the sample.
pub fn vllm_sized() -> Value {
    let file = repo_root().join("config/examples/vllm.yaml");
    let example: Value =
        serde_yaml::from_str(&std::fs::read_to_string(file).expect("vllm example"))
            .expect("vllm example parses");
    let mut spec = example["spec"].clone();
    let server = &mut spec["server"];
    for field in ["nodeSelector", "tolerations"] {
        server.as_object_mut().map(|s| s.remove(field));
    }
    server["resources"] = json!({"requests": {"cpu": "10m", "memory": "64Mi"},
                                 "limits": {"memory": "64Gi"}});
    server["volumes"] = json!([{"name": "weights", "emptyDir": {}}]);
    spec["replicas"] = json!(1);
    spec
}

struct Converged {
    rss_kib: u64,
    writes_per_model: f64,
    spec_bytes: usize,
}

async fn converge(client: &Client, n: usize, what: &str, spec: &Value) -> Converged {
    let ns = TestNamespace::new(client, &format!("bench-template-{what}-{n}")).await;
    Api::<ServiceAccount>::namespaced(client.clone(), &ns.name)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vllm"}})).expect("sa"),
        )
        .await
        .expect("service account");
    let op = Probed::start(&ns.name);
    op.until_ready(Duration::from_secs(60))
        .await
        .expect("operator ready");
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let mut ready = count_ready(mds.clone(), md_ready);
    let before = op.requests().await;
    create_all(n, |i| {
        let mds = mds.clone();
        let md = model(&format!("m{i}"), spec.clone());
        async move {
            mds.create(&PostParams::default(), &md).await?;
            Ok(())
        }
    })
    .await;
    assert!(until_count(&mut ready, n).await, "{what}: not all Ready");
    // The last status writes of the convergence land in the first seconds.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = requests_between(&before, &op.requests().await);
    let rss_kib = op.memory().map(|(rss, _)| rss).unwrap_or_default();
    drop(op);
    delete_namespace(&ns).await;
    Converged {
        rss_kib,
        writes_per_model: writes(&during) as f64 / n as f64,
        spec_bytes: serde_json::to_vec(spec)
            .map(|b| b.len())
            .unwrap_or_default(),
    }
}

pub async fn run(client: &Client, n: usize) -> Vec<Row> {
    eprintln!("bench: N={n}: sample spec, then a vLLM-sized one");
    let small = converge(client, n, "sample", &sample()).await;
    let large = converge(client, n, "vllm", &vllm_sized()).await;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let ratio = large.rss_kib as f64 / small.rss_kib.max(1) as f64;
    vec![
        Row::new(
            format!("N={n}: operator RSS converged, vLLM-sized pod vs sample"),
            format!(
                "{ratio:.2}×: {:.1} MiB with {} B specs, {:.1} MiB with {} B specs",
                mib(large.rss_kib),
                large.spec_bytes,
                mib(small.rss_kib),
                small.spec_bytes
            ),
        )
        .target("≤ 1.10×", ratio <= 1.10)
        .data(
            json!({"n": n, "ratio": ratio, "vllm_rss_kib": large.rss_kib,
                     "sample_rss_kib": small.rss_kib, "vllm_spec_bytes": large.spec_bytes,
                     "sample_spec_bytes": small.spec_bytes}),
        ),
        Row::new(
            format!("N={n}: operator writes per model, vLLM-sized pod vs sample"),
            format!(
                "{:.2} vs {:.2}",
                large.writes_per_model, small.writes_per_model
            ),
        )
        .target(
            "unchanged",
            (large.writes_per_model - small.writes_per_model).abs() < 0.05,
        )
        .data(json!({"n": n, "vllm": large.writes_per_model, "sample": small.writes_per_model})),
    ]
}
