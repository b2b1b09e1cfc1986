//! `model-operator --version` and `kubectl model --version`: the crate
//! version and the git commit when the build knew it (build.rs), also from a
//! source tree without `.git` (a tarball) and with the commit given by the
//! environment (the Dockerfile's GIT_COMMIT).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn head_commit() -> Option<String> {
    let out = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn version_of(binary: &str) -> String {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .expect("binary runs");
    assert!(out.status.success(), "{binary} --version failed: {out:?}");
    String::from_utf8(out.stdout).expect("text")
}

#[test]
fn both_binaries_print_the_crate_version_and_commit() {
    for (binary, name) in [
        (env!("CARGO_BIN_EXE_model-operator"), "model-operator"),
        (env!("CARGO_BIN_EXE_kubectl-model"), "kubectl-model"),
    ] {
        let printed = version_of(binary);
        let expected = match std::env::var("MODEL_OPERATOR_GIT_COMMIT")
            .ok()
            .filter(|c| !c.is_empty())
            .or_else(head_commit)
        {
            Some(commit) => format!("{name} {} (commit {commit})\n", env!("CARGO_PKG_VERSION")),
            None => format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
        };
        assert_eq!(printed, expected);
    }
}

/// Compiles build.rs on its own and runs it the way cargo does, in `dir`.
fn run_build_script(dir: &Path, env_commit: Option<&str>) -> String {
    let out_dir = repo_root().join("target/version-test");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let exe = out_dir.join("build-script");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let compiled = Command::new(rustc)
        .args(["--edition=2024", "-o"])
        .arg(&exe)
        .arg(repo_root().join("build.rs"))
        .output()
        .expect("rustc runs");
    assert!(
        compiled.status.success(),
        "build.rs does not compile: {compiled:?}"
    );
    let mut cmd = Command::new(&exe);
    cmd.env("CARGO_MANIFEST_DIR", dir)
        .env("CARGO_PKG_VERSION", env!("CARGO_PKG_VERSION"))
        .env_remove("MODEL_OPERATOR_GIT_COMMIT");
    if let Some(commit) = env_commit {
        cmd.env("MODEL_OPERATOR_GIT_COMMIT", commit);
    }
    let out = cmd.output().expect("build script runs");
    assert!(out.status.success(), "build script failed: {out:?}");
    String::from_utf8(out.stdout).expect("text")
}

#[test]
fn a_tree_without_git_gets_the_crate_version_or_the_commit_it_is_given() {
    // A directory outside any git work tree, like an unpacked tarball.
    let tarball = std::env::temp_dir().join(format!("model-operator-src-{}", std::process::id()));
    std::fs::create_dir_all(&tarball).expect("temp dir");
    let plain = run_build_script(&tarball, None);
    let given = run_build_script(&tarball, Some("0123456789ab"));
    let _ = std::fs::remove_dir_all(&tarball);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        plain.contains(&format!(
            "cargo:rustc-env=MODEL_OPERATOR_VERSION={version}\n"
        )),
        "{plain}"
    );
    assert!(
        given.contains(&format!(
            "cargo:rustc-env=MODEL_OPERATOR_VERSION={version} (commit 0123456789ab)\n"
        )),
        "{given}"
    );
    // A git work tree that is not this crate's (the tarball unpacked inside
    // another repository's checkout) does not lend its commit.
    if head_commit().is_some() {
        let inside = repo_root().join("target/version-test/unpacked");
        std::fs::create_dir_all(&inside).expect("dir");
        let nested = run_build_script(&inside, None);
        assert!(
            nested.contains(&format!(
                "cargo:rustc-env=MODEL_OPERATOR_VERSION={version}\n"
            )),
            "{nested}"
        );
    }
}
