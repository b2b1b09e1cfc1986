//! Forge workflows: every job that may write packages (push images and
//! charts in our name) runs actions pinned by full commit SHA, with the
//! release tag in a comment (issue 24; docs/security.md "Release jobs run
//! pinned actions"): a moved or compromised tag cannot change what runs
//! there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::PathBuf;

use serde_json::Value;

fn workflows() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".github/workflows");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("workflows")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn pinned(uses: &str) -> bool {
    uses.split_once('@').is_some_and(|(action, rev)| {
        action.contains('/') && rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
    })
}

#[test]
fn jobs_that_write_packages_run_actions_pinned_by_commit() {
    let mut checked = 0;
    for (file, text) in workflows() {
        let workflow: Value = serde_yaml::from_str(&text).expect("workflow YAML");
        let jobs = workflow["jobs"].as_object().cloned().unwrap_or_default();
        for (job, spec) in jobs {
            if spec["permissions"]["packages"] != "write" {
                continue;
            }
            for step in spec["steps"].as_array().into_iter().flatten() {
                let Some(uses) = step["uses"].as_str() else {
                    continue;
                };
                assert!(
                    pinned(uses),
                    "{file} job {job}: {uses} is not pinned by commit"
                );
                // The tag it stands for, for the next person to update it.
                let line = text.lines().find(|l| l.contains(uses)).unwrap();
                assert!(
                    line.contains(" # "),
                    "{file} job {job}: {uses} has no tag comment"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "no job writes packages: the test checks nothing"
    );
}

/// The toolchain action's pin is the toolchain rust-toolchain.toml names.
#[test]
fn the_pinned_toolchain_is_the_repositorys() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let toolchain = std::fs::read_to_string(root.join("rust-toolchain.toml")).unwrap();
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .map(|c| c.trim_matches('"').to_string())
        .expect("channel");
    for (file, text) in workflows() {
        for line in text
            .lines()
            .filter(|l| l.contains("dtolnay/rust-toolchain@"))
        {
            let uses = line.split("uses:").nth(1).unwrap().trim();
            if pinned(uses.split_whitespace().next().unwrap()) {
                assert!(line.contains(&format!("# {channel}")), "{file}: {line}");
            } else {
                assert!(
                    uses.starts_with(&format!("dtolnay/rust-toolchain@{channel}")),
                    "{file}: {line}"
                );
            }
        }
    }
}
