//! The krew plugin manifest (config/krew/model.yaml), filled in the way the
//! release workflow fills it: hack/plugin-archive.sh packs a binary for
//! every platform of the workflow's `plugin` matrix, hack/krew-manifest.sh
//! writes the manifest, and the result must be a krew `Plugin` whose
//! platforms are exactly the workflow's and whose URIs and digests are the
//! archives' the release uploads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const REPOSITORY: &str = "example-org/model-operator";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(root().join(program))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The (os, arch) pairs the release workflow builds the plugin for.
fn workflow_platforms(workflow: &Value) -> BTreeSet<(String, String)> {
    workflow["jobs"]["plugin"]["strategy"]["matrix"]["include"]
        .as_array()
        .expect("the plugin job's matrix")
        .iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().expect(k).to_string();
            (field("os"), field("arch"))
        })
        .collect()
}

fn sha256(path: &Path) -> String {
    let out = ok(
        "sha256sum",
        Command::new("sha256sum").arg(path).output().unwrap(),
    );
    out.split_whitespace().next().unwrap().to_string()
}

/// Every platform packed from a stand-in executable, into a fresh directory
/// of this test's own (tests run at once).
fn archives(test: &str, platforms: &BTreeSet<(String, String)>) -> PathBuf {
    let dir = root().join("target/krew-test").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("kubectl-model");
    std::fs::write(&binary, "#!/bin/sh\necho stand-in\n").unwrap();
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&binary)
        .status()
        .unwrap();
    assert!(status.success());
    let dist = dir.join("dist");
    for (os, arch) in platforms {
        ok(
            "hack/plugin-archive.sh",
            run(
                "hack/plugin-archive.sh",
                &[
                    &binary.to_string_lossy(),
                    os,
                    arch,
                    env!("CARGO_PKG_VERSION"),
                    &dist.to_string_lossy(),
                ],
            ),
        );
    }
    dist
}

#[test]
fn the_filled_manifest_is_a_krew_plugin_for_exactly_the_released_archives() {
    let workflow = yaml(&root().join(".github/workflows/release.yml"));
    let platforms = workflow_platforms(&workflow);
    let every: BTreeSet<(String, String)> = [
        ("darwin", "amd64"),
        ("darwin", "arm64"),
        ("linux", "amd64"),
        ("linux", "arm64"),
    ]
    .iter()
    .map(|(o, a)| (o.to_string(), a.to_string()))
    .collect();
    assert_eq!(platforms, every, "the workflow's plugin platforms");

    let version = env!("CARGO_PKG_VERSION");
    let dist = archives("complete", &platforms);
    let manifest = ok(
        "hack/krew-manifest.sh",
        run(
            "hack/krew-manifest.sh",
            &[version, REPOSITORY, &dist.to_string_lossy()],
        ),
    );
    let plugin: Value = serde_yaml::from_str(&manifest).expect("the manifest is YAML");
    assert_eq!(
        plugin["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(plugin["kind"], "Plugin");
    assert_eq!(plugin["metadata"]["name"], "model");
    let spec = &plugin["spec"];
    assert_eq!(spec["version"], format!("v{version}"));
    assert!(
        spec["shortDescription"]
            .as_str()
            .is_some_and(|d| !d.is_empty() && d.len() <= 80),
        "shortDescription: {}",
        spec["shortDescription"]
    );
    assert_eq!(spec["homepage"], format!("https://github.com/{REPOSITORY}"));

    // Published under this name by the publish job's `gh release create`.
    let publish = workflow["jobs"]["publish"].to_string();
    assert!(
        publish.contains("dist/plugin/kubectl-model_*.tar.gz")
            && publish.contains("dist/plugin/model.yaml"),
        "the release no longer uploads the archives and the manifest"
    );
    let mut seen = BTreeSet::new();
    for platform in spec["platforms"].as_array().expect("platforms") {
        let labels = platform["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels");
        assert_eq!(labels.len(), 2, "only os and arch: {platform}");
        let os = labels["os"].as_str().expect("os").to_string();
        let arch = labels["arch"].as_str().expect("arch").to_string();
        let file = format!("kubectl-model_{version}_{os}_{arch}.tar.gz");
        assert_eq!(
            platform["uri"],
            format!("https://github.com/{REPOSITORY}/releases/download/v{version}/{file}"),
        );
        let archive = dist.join(&file);
        assert!(archive.exists(), "the release has no {file}");
        assert_eq!(platform["sha256"], sha256(&archive), "{file}");
        assert_eq!(platform["bin"], "kubectl-model");
        let listing = ok(
            "tar -tzf",
            Command::new("tar")
                .arg("-tzf")
                .arg(&archive)
                .output()
                .unwrap(),
        );
        assert_eq!(listing.trim(), "kubectl-model", "{file}");
        assert!(seen.insert((os, arch)), "a platform twice: {platform}");
    }
    assert_eq!(seen, platforms, "the manifest's platforms");
}

/// A platform the workflow did not pack leaves the manifest unwritten.
#[test]
fn a_missing_archive_fails_the_manifest() {
    let all = workflow_platforms(&yaml(&root().join(".github/workflows/release.yml")));
    let fewer: BTreeSet<_> = all.into_iter().skip(1).collect();
    let dist = archives("missing", &fewer);
    let out = run(
        "hack/krew-manifest.sh",
        &[
            env!("CARGO_PKG_VERSION"),
            REPOSITORY,
            &dist.to_string_lossy(),
        ],
    );
    assert!(!out.status.success(), "a manifest without every digest");
    assert!(String::from_utf8_lossy(&out.stderr).contains(".tar.gz.sha256"));
}
