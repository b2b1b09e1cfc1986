//! The source tree keeps its shape: imports between the files of `src/`
//! form no cycle, and they only go down the pipeline
//! (`controller` → `reconcile` → `outbound`, `status`, `cache` → the pure
//! modules → `api`), as `src/lib.rs` and docs/development.md's layout say.
//!
//! Read from the source text (`use` items and `crate::`/`super::`/`self::`
//! paths), test modules left out. Run alone with
//! `cargo test --test layout`; a failure names the files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's rank: a module may import modules of its own
/// rank or below, never above. Every top-level module must be listed, so a
/// new one has to be placed on purpose.
const RANKS: &[(&str, u8)] = &[
    ("main", 6),
    // Unit tests' builders (`#[cfg(test)]`): they may use anything, and no
    // production code can use them.
    ("fixtures", 6),
    ("leader", 5),
    ("http", 5),
    ("controller", 4),
    ("reconcile", 3),
    ("outbound", 2),
    ("status", 2),
    ("cache", 2),
    ("analysis", 1),
    ("rollout", 1),
    ("alerts", 1),
    ("resources", 1),
    ("validate", 1),
    ("metrics", 1),
    ("client", 1),
    ("api", 0),
    ("gates", 0),
    ("reasons", 0),
    ("quantity", 0),
    ("digest", 0),
    ("error", 0),
    ("telemetry", 0),
];

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; lib.rs → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text a file contributes to the build outside tests: up to its first
/// `#[cfg(test)]`, and nothing of a file that is a test module itself.
fn production_text(file: &Path) -> String {
    let name = file.file_name().unwrap().to_string_lossy();
    if name == "tests.rs" || name.ends_with("_tests.rs") || name == "proptests.rs" {
        return String::new();
    }
    let text = std::fs::read_to_string(file).unwrap();
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(path: &str) -> Vec<String> {
    let path: String = path.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = path.find('{') else {
        return vec![path];
    };
    let (prefix, body) = (&path[..open], &path[open + 1..path.len() - 1]);
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// Every path the text names that starts at `crate`, `super` or `self`.
fn named_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for item in text.split(';') {
        if let Some(at) = item.find("use ") {
            let before = &item[..at];
            if before.trim_end().is_empty()
                || before.ends_with(char::is_whitespace) && !before.trim_end().ends_with("::")
            {
                paths.extend(expand(item[at + 4..].trim()));
            }
        }
    }
    let bytes = text.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(found) = text[from..].find(start) {
            let at = from + found;
            let boundary =
                at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            let end = text[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(text.len(), |e| at + e);
            if boundary {
                paths.push(text[at..end].trim_end_matches(':').to_string());
            }
            from = end.max(at + start.len());
        }
    }
    paths
}

/// The file-level import graph of `src/` (lib side; binaries apart).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| !f.starts_with(src.join("bin")));
    let modules: BTreeMap<Vec<String>, &PathBuf> =
        files.iter().map(|f| (module_of(&src, f), f)).collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let is_dir =
            file.ends_with("mod.rs") || file.ends_with("lib.rs") || file.ends_with("main.rs");
        let mut targets = BTreeSet::new();
        for path in named_paths(&production_text(file)) {
            let segments: Vec<&str> = path
                .split("::")
                .map(|s| s.split(' ').next().unwrap_or(s))
                .collect();
            let mut base: Vec<String> = match segments[0] {
                "crate" => Vec::new(),
                "super" | "self" => module.clone(),
                _ => continue,
            };
            let mut rest = &segments[..];
            if segments[0] == "crate" {
                rest = &segments[1..];
            } else {
                // In a file module, `self` is the file and `super` its
                // folder; in mod.rs, `self` is the folder.
                if !is_dir && segments[0] == "super" {
                    base.pop();
                    rest = &segments[1..];
                }
                while let Some(first) = rest.first() {
                    match *first {
                        "self" => rest = &rest[1..],
                        "super" => {
                            base.pop();
                            rest = &rest[1..];
                        }
                        _ => break,
                    }
                }
            }
            let full: Vec<String> = base
                .into_iter()
                .chain(rest.iter().map(|s| s.to_string()))
                .collect();
            // The longest prefix that is a file of ours.
            let target = (1..=full.len())
                .rev()
                .map(|k| full[..k].to_vec())
                .find(|candidate| modules.contains_key(candidate));
            if let Some(target) = target {
                let nested = target.starts_with(module) || module.starts_with(&target);
                if !nested {
                    targets.insert(target.join("::"));
                }
            }
        }
        edges.insert(module.join("::"), targets);
    }
    edges
}

/// The strongly connected components of more than one file.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two files are in one cycle when each reaches the other.
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(at) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    for (module, reached) in &reaches {
        if !reached.contains(*module) || found.iter().any(|c| c.contains(module)) {
            continue;
        }
        let cycle: Vec<String> = reached
            .iter()
            .filter(|other| reaches.get(other).is_some_and(|r| r.contains(*module)))
            .cloned()
            .collect();
        found.push(cycle);
    }
    found
}

#[test]
fn no_file_of_src_is_in_an_import_cycle() {
    let edges = graph();
    assert!(
        edges.len() > 50,
        "the whole tree was read ({} files)",
        edges.len()
    );
    let found = cycles(&edges);
    assert!(found.is_empty(), "import cycles: {found:#?}");
}

#[test]
fn imports_only_go_down_the_pipeline() {
    let rank = |module: &str| {
        let top = module.split("::").next().unwrap_or_default();
        RANKS
            .iter()
            .find(|(name, _)| *name == top)
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("src/{top} has no place in tests/layout.rs's RANKS"))
    };
    let mut upward = Vec::new();
    for (from, targets) in graph() {
        if from.is_empty() {
            continue; // lib.rs declares every module
        }
        for to in targets {
            if rank(&to) > rank(&from) {
                upward.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that go back up: {upward:#?}");
}

#[test]
fn the_reader_finds_a_cycle_when_there_is_one() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_string(), to.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
    assert_eq!(
        expand("crate::a::{b, c::{d, e}}"),
        vec!["crate::a::b", "crate::a::c::d", "crate::a::c::e"]
    );
}
