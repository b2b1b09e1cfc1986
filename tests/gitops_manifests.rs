//! Every ModelDeployment the repository ships (config/samples,
//! config/examples) states `spec.paused`. Argo CD's diff compares only the
//! fields Git sets, so without it a `kubectl model pause` is never seen as
//! drift and self-heal never undoes it: a rollout could stay paused with
//! nobody looking (issue 29, docs/gitops.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::Path;

use serde::Deserialize;

#[test]
fn every_shipped_model_deployment_states_paused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for dir in ["config/samples", "config/examples"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_json::Value::deserialize(doc).unwrap();
                if value["kind"] != "ModelDeployment" {
                    continue;
                }
                seen += 1;
                assert!(
                    value["spec"]["paused"].is_boolean(),
                    "{}: spec.paused is not stated",
                    path.display()
                );
            }
        }
    }
    assert!(seen >= 6, "only {seen} ModelDeployments found");
}
