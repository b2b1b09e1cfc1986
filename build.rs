//! Embeds the version `--version` prints: the crate version and, when known,
//! the git commit it was built from.
//!
//! The commit comes from `MODEL_OPERATOR_GIT_COMMIT` when set (image builds
//! without `.git`: the Dockerfile's GIT_COMMIT build argument), else from
//! `git rev-parse HEAD` when this crate is the top of a git work tree. From a
//! source tarball neither is there and only the crate version is printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=MODEL_OPERATOR_GIT_COMMIT");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let from_env = std::env::var("MODEL_OPERATOR_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    // Only this crate's own repository: a tarball unpacked inside some other
    // work tree must not report that tree's commit.
    let own_repo = git(&dir, &["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top).ok())
        .zip(std::fs::canonicalize(&dir).ok())
        .is_some_and(|(top, dir)| top == dir);
    let commit = from_env.or_else(|| {
        if !own_repo {
            return None;
        }
        // Rebuild when HEAD moves: HEAD itself, the branch it points to
        // (in the common dir for a linked work tree) and packed refs.
        let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
        watched.extend(git(&dir, &["symbolic-ref", "-q", "HEAD"]));
        for name in watched {
            if let Some(path) = git(&dir, &["rev-parse", "--git-path", &name]) {
                let path = dir.join(path);
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
        git(&dir, &["rev-parse", "--short=12", "HEAD"])
    });
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let full = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version,
    };
    println!("cargo:rustc-env=MODEL_OPERATOR_VERSION={full}");
}
