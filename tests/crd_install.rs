//! The CRD installs the plain way: `kubectl apply -f crds/` (client-side,
//! whose last-applied annotation must stay under the API server's 256 KiB
//! for all annotations) and the API server accepts its schema and the cost
//! of its CEL rules. The sizes are printed so growth is seen (issue 25).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use support::*;

/// The API server's limit on all of an object's annotations together.
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

#[test]
fn the_crd_fits_in_a_client_side_apply() {
    let file = repo_root().join("crds/mlops.dev_modeldeployments.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    // kubectl stores the manifest as compact JSON in the annotation.
    let last_applied = serde_json::to_string(&crd).unwrap().len();
    println!(
        "CRD: {} bytes of YAML, {last_applied} bytes as kubectl's last-applied annotation \
         (limit {ANNOTATIONS_LIMIT}, {:.0}% used)",
        yaml.len(),
        100.0 * last_applied as f64 / ANNOTATIONS_LIMIT as f64
    );
    assert!(
        last_applied < ANNOTATIONS_LIMIT * 3 / 4,
        "{last_applied} bytes: a client-side `kubectl apply -f crds/` would come close to \
         the API server's annotation limit; shorten descriptions (api::explain)"
    );
}

#[tokio::test]
async fn kubectl_apply_of_the_crds_folder_is_accepted_by_the_api_server() {
    let client = client().await;
    ensure_crd(&client).await;
    let dir = repo_root().join("crds");
    // A server-side dry run of the client-side apply: the API server runs
    // its validation (schema, CEL cost, annotation size) without storing,
    // so the CRD other tests use is untouched.
    let out = kubectl(&["apply", "--dry-run=server", "-f", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "kubectl apply -f crds/ was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
