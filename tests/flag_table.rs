//! The README's flag table lists every flag of `model-operator run`, with
//! the environment variable clap reads it from: a flag added to the code
//! and not to the table fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::collections::BTreeSet;
use std::process::Command;

/// (flag, environment variable) of every option `run --help` prints.
fn flags_of_help() -> Vec<(String, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_model-operator"))
        .args(["run", "--help"])
        .output()
        .expect("run model-operator run --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        let option = line.strip_prefix("-h, ").unwrap_or(line);
        if let Some(rest) = option.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            flags.push((format!("--{name}"), None));
        } else if let Some(env) = line.strip_prefix("[env: ") {
            let env = env.split('=').next().unwrap().trim_end_matches(']');
            if let Some(last) = flags.last_mut() {
                last.1 = Some(env.to_string());
            }
        }
    }
    flags.retain(|(name, _)| name != "--help");
    flags
}

/// The first cell (flags) and second cell (environment variables) of each
/// row of the README's table of flags.
fn table_rows() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let mut cells = l.split(" | ");
            let flags = cells.next().unwrap_or_default().to_string();
            let env = cells.next().unwrap_or_default().to_string();
            (flags, env)
        })
        .collect()
}

#[test]
fn every_flag_of_run_is_in_the_readme_with_its_environment_variable() {
    let rows = table_rows();
    let flags = flags_of_help();
    assert!(flags.len() > 20, "read the flags of --help: {flags:?}");
    let mut missing = BTreeSet::new();
    for (flag, env) in &flags {
        // `--namespace NS`, `--log-format text|json`, `--leader-elect[=false]`
        let named = |cell: &str| {
            cell.match_indices(flag.as_str()).any(|(i, _)| {
                !cell[i + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            })
        };
        match rows.iter().find(|(cell, _)| named(cell)) {
            None => {
                missing.insert(format!("{flag}: no row"));
            }
            Some((_, env_cell)) => {
                if let Some(env) = env
                    && !env_cell.contains(env.as_str())
                {
                    missing.insert(format!("{flag}: row without {env}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's flag table misses: {missing:?}"
    );
}
