//! `crds/` is generated from the code and never edited by hand: this fails
//! when it is stale. Regenerate with `make crds`, which also copies it into
//! the Helm chart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::process::Command;

#[test]
fn crds_folder_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crds/mlops.dev_modeldeployments.yaml");
    let committed =
        std::fs::read_to_string(&path).expect("crds/mlops.dev_modeldeployments.yaml exists");
    let generated = model_operator::api::crd_yaml().expect("CRD renders");
    assert!(
        committed == generated,
        "{} is stale: run `make crds`",
        path.display()
    );
}

#[test]
fn the_crd_subcommand_prints_the_same_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_model-operator"))
        .arg("crd")
        .output()
        .expect("run model-operator crd");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        model_operator::api::crd_yaml().unwrap()
    );
}

#[test]
fn the_helm_chart_ships_the_same_crd() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    assert!(
        read("charts/model-operator/files/mlops.dev_modeldeployments.yaml")
            == read("crds/mlops.dev_modeldeployments.yaml"),
        "the Helm chart's CRD differs from crds/: run `make crds`"
    );
}
