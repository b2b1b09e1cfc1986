//! The largest spec that runs: every text-carrying field at its bound
//! (docs/api.md, "Limits"). Shared by `tests/tenancy_spec_bounds.rs` and
//! the benchmark's spec-memory part.

use serde_json::{Value, json};

/// A valid qualified name of `len` characters (at most 317): a DNS
/// subdomain prefix, '/', a name.
pub fn qualified(tag: char, i: usize, len: usize) -> String {
    assert!(len > 65, "a prefix of at least one character");
    let name = format!("{tag}{i:0>62}");
    let prefix_len = len - name.len() - 1;
    let mut prefix = String::new();
    while prefix.len() < prefix_len {
        let left = prefix_len - prefix.len();
        if left <= 63 {
            prefix.push_str(&"p".repeat(left));
            break;
        }
        // A part and its dot, never leaving an empty last part.
        prefix.push_str(&"p".repeat((left - 2).min(62)));
        prefix.push('.');
    }
    format!("{prefix}/{name}")
}

/// `total` bytes as `n` strings of equal length, each tagged by its index.
pub fn split(total: usize, n: usize, fill: char) -> Vec<String> {
    (0..n)
        .map(|i| {
            let tag = format!("{i:0>4}");
            let len = total / n;
            format!("{tag}{}", fill.to_string().repeat(len - tag.len()))
        })
        .collect()
}

/// A spec with every text-carrying field at its bound (docs/api.md,
/// "Limits"). `version` changes the served version.
pub fn largest_spec(version: &str) -> Value {
    let headers: Vec<Value> = (0..8)
        .map(|i| json!({"name": format!("X-H{i}"), "value": "h".repeat(1024)}))
        .collect();
    let env: Vec<Value> = split(32 * 1024, 64, 'e')
        .into_iter()
        .enumerate()
        .map(|(i, value)| json!({"name": format!("E{i:0>127}"), "value": value}))
        .collect();
    let labels: serde_json::Map<String, Value> = (0..32)
        .map(|i| (qualified('l', i, 317), json!("v".repeat(63))))
        .collect();
    let annotations: serde_json::Map<String, Value> = split(32 * 1024, 32, 'a')
        .into_iter()
        .enumerate()
        .map(|(i, v)| (qualified('a', i, 317), json!(v)))
        .collect();
    let tolerations: Vec<Value> = (0..16)
        .map(|i| json!({"key": qualified('k', i, 256), "operator": "Equal", "value": "t".repeat(63), "effect": "NoSchedule"}))
        .collect();
    json!({
        "model": {"version": version, "uri": format!("s3://{}", "u".repeat(2043)), "format": "f".repeat(63)},
        "server": {
            "image": format!("registry.example/{}:1", "i".repeat(493)),
            "command": split(8 * 1024, 4, 'c'),
            "args": split(32 * 1024, 4, 'g'),
            "env": env,
            "readinessProbe": {"httpGet": {"path": format!("/{}", "p".repeat(2047)), "port": 8080, "httpHeaders": headers}},
            "livenessProbe": {"exec": {"command": split(8 * 1024, 2, 'x')}},
            "tolerations": tolerations,
        },
        "podMetadata": {"labels": labels, "annotations": annotations},
        "replicas": 1,
        "revisionHistoryLimit": 100,
    })
}

/// Peak resident memory of a process, from /proc (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}
