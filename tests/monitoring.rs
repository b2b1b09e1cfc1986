//! The chart's alert rules and Grafana dashboard against the real local
//! Prometheus scraping a real operator: the rules (rendered by the chart for
//! this test's scrape job) load and evaluate without error and fire for a
//! real rollback; every query of every dashboard panel returns data.
//! Their logic is unit-tested by `promtool test rules` (make test-rules).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model_operator::api::{Outcome, Phase};
use serde_json::{Value, json};
use support::gates::*;
use support::helm::{chart, objects, ok, template};
use support::*;

const DEADLINE: Duration = Duration::from_secs(90);

/// A rule file in the local Prometheus' rules/ folder, loaded with a reload;
/// removed when dropped (its rules go at the next reload).
struct RuleFile {
    path: PathBuf,
}

impl RuleFile {
    async fn install(name: &str, groups: &Value) -> Self {
        let dir = repo_root().join(".local/monitoring/rules");
        std::fs::create_dir_all(&dir).expect("rules dir");
        let path = dir.join(format!("{name}.yaml"));
        let text = serde_yaml::to_string(&json!({ "groups": groups })).expect("YAML");
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write rules");
        std::fs::rename(&tmp, &path).expect("publish rules");
        reload().await;
        Self { path }
    }
}

impl Drop for RuleFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn reload() {
    let response = reqwest::Client::new()
        .post(format!("{}/-/reload", prometheus()))
        .send()
        .await
        .expect("Prometheus answers (is `make monitoring-up` running?)");
    assert!(
        response.status().is_success(),
        "reload: {}",
        response.text().await.unwrap_or_default()
    );
}

async fn api(path: &str, query: &[(&str, String)]) -> Value {
    let response: Value = reqwest::Client::new()
        .get(format!("{}{path}", prometheus()))
        .query(query)
        .send()
        .await
        .expect("Prometheus answers")
        .json()
        .await
        .expect("JSON");
    response
}

/// The chart's PrometheusRule for this test's scrape job, as rule groups.
fn chart_rules(job: &str) -> Value {
    let selector = format!(r#"prometheusRule.operatorSelector=job="{job}""#);
    let rendered = objects(&ok(
        "helm template",
        template(
            &chart(),
            "monitoring",
            &["prometheusRule.enabled=true", &selector],
        ),
    ));
    let rule = rendered
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("the chart renders a PrometheusRule");
    rule["spec"]["groups"].clone()
}

/// Every rule Prometheus loaded from `file`: (name, health, lastError).
async fn loaded_rules(file: &str) -> Vec<(String, String, String)> {
    let rules = api("/api/v1/rules", &[]).await;
    rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["file"].as_str().is_some_and(|f| f.ends_with(file)))
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("health"), s("lastError"))
        })
        .collect()
}

/// Grafana's variables as this test sets them.
fn substitute(expr: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = expr.to_string();
    // Longest names first, so $namespace is not cut by a shorter $name.
    let mut names: Vec<_> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${name}"), &vars[name]);
    }
    assert!(
        !out.contains('$'),
        "{expr}: a variable this test does not set"
    );
    out
}

/// (panel title, query) for every target of every panel.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(chart().join("files/dashboard.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("title").to_string();
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title} has no query");
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {title} must use the dashboard's data source variable"
        );
        for target in targets {
            let expr = target["expr"].as_str().expect("expr").to_string();
            queries.push((title.clone(), expr));
        }
    }
    queries
}

/// The query's result over the test so far; Err on a query error.
async fn range_query(query: &str, start: f64) -> Result<usize, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let response = api(
        "/api/v1/query_range",
        &[
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{now:.3}")),
            ("step", "2".into()),
        ],
    )
    .await;
    if response["status"] != "success" {
        return Err(response.to_string());
    }
    Ok(response["data"]["result"]
        .as_array()
        .map_or(0, |series| series.len()))
}

#[tokio::test]
async fn the_charts_alert_rules_and_dashboard_work_on_the_operators_real_metrics() {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let s = setup("monitoring").await;
    let job = format!("operator-{}", s.ns.name);
    let _operator = ScrapeTarget::add(&job, s.operators[0].metrics_port(), json!({}));
    let rule_file = format!("{}.yaml", s.ns.name);
    let rules = RuleFile::install(&s.ns.name, &chart_rules(&job)).await;

    // A rollout promoted, then one rolled back on its metric gate, with the
    // alert sent to the local Alertmanager by the operator itself.
    s.error_rates(&[("1.0", 0.01), ("2.0", 0.30)]);
    s.scraped("2.0", Some(0.30)).await;
    s.create(gated(
        "1.0",
        analysis(json!({}), 0.05, Some(50.0)),
        json!({"alertmanager": {"url": alertmanager()}}),
    ))
    .await;
    s.wait("promote 1.0", |m| {
        stable(m) == Some(1) && phase(m) == Some(Phase::Healthy)
    })
    .await;
    s.set_version("2.0").await;
    s.wait("roll 2.0 back", |m| {
        outcome(m, 2) == Some(Outcome::RolledBack) && phase(m) == Some(Phase::RolledBack)
    })
    .await;

    // The chart's rule fires for this ModelDeployment in the real Prometheus.
    let what = format!("ModelDeploymentRolledBack fires for {}/m", s.ns.name);
    eventually(&what, DEADLINE, || async {
        let alerts = api("/api/v1/alerts", &[]).await;
        let firing = alerts["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["labels"]["alertname"] == "ModelDeploymentRolledBack"
                    && a["labels"]["namespace"] == s.ns.name.as_str()
                    && a["labels"]["modeldeployment"] == "m"
                    && a["state"] == "firing"
            });
        if firing { Ok(()) } else { Err(alerts) }
    })
    .await;

    // Every rule of the file is loaded and evaluates without error.
    let expected = chart_rules(&job)
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    let what = format!("all {expected} rules of {rule_file} load and evaluate");
    eventually(&what, DEADLINE, || async {
        let rules = loaded_rules(&rule_file).await;
        let bad: Vec<_> = rules
            .iter()
            .filter(|(_, health, _)| health != "ok")
            .cloned()
            .collect();
        if rules.len() == expected && bad.is_empty() {
            Ok(())
        } else {
            Err(format!("{} loaded; not ok: {bad:#?}", rules.len()))
        }
    })
    .await;

    // Every dashboard query returns data for this operator and namespace.
    let vars = BTreeMap::from([
        ("job", job.clone()),
        ("namespace", s.ns.name.clone()),
        ("modeldeployment", "m".to_string()),
        ("__rate_interval", "1m".to_string()),
        ("__range", "10m".to_string()),
    ]);
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let what = "every dashboard panel has data";
    eventually(what, DEADLINE, || async {
        let mut missing = Vec::new();
        for (title, expr) in &queries {
            let query = substitute(expr, &vars);
            match range_query(&query, started).await {
                Ok(0) => missing.push(format!("{title}: no data for {query}")),
                Ok(_) => {}
                Err(e) => panic!("{title}: {query} failed: {e}"),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("\n"))
        }
    })
    .await;
    drop(rules);
    reload().await;
}

/// Every `model_operator_*` name the rules, their promtool tests and the
/// dashboard use is one the operator exports (checked against its own
/// registry, so a renamed metric fails here, not silently in Grafana).
#[test]
fn rules_and_dashboard_use_only_metrics_the_operator_exports() {
    use model_operator::metrics::*;
    // One series in every family, so each shows in the exposition.
    let m = Metrics::default();
    let s = String::new;
    m.reconciles
        .get_or_create(&ReconcileLabels { outcome: s() })
        .inc();
    m.revision_outcomes
        .get_or_create(&RevisionLabels {
            outcome: s(),
            reason: s(),
        })
        .inc();
    m.objects.set_gate(
        &s(),
        &s(),
        &s(),
        Gate {
            value: 1.0,
            lower: Some(0.0),
            upper: Some(1.0),
        },
    );
    m.analysis_checks
        .get_or_create(&CheckLabels { verdict: s() })
        .inc();
    m.alert_deliveries
        .get_or_create(&DeliveryLabels {
            channel: s(),
            result: s(),
        })
        .inc();
    m.api_requests
        .get_or_create(&ApiRequestLabels {
            verb: s(),
            resource: s(),
        })
        .inc();
    m.objects.set_phase(&s(), &s(), Some(Phase::Healthy));
    m.objects.set_firing(&s(), &s(), [("", "")]);
    let exposition = m.encode();
    let families: Vec<(String, String)> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    assert!(families.len() >= 10, "{exposition}");
    let exported = |name: &str| {
        families.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            suffixes.iter().any(|s| name == format!("{family}{s}"))
        })
    };
    let root = repo_root();
    for file in [
        "charts/model-operator/files/prometheus-rules.yaml",
        "charts/model-operator/files/dashboard.json",
        "hack/monitoring/rules-test.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let mut used: Vec<&str> = text
            .match_indices("model_operator_")
            .map(|(i, _)| {
                let rest = &text[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        used.sort_unstable();
        used.dedup();
        assert!(!used.is_empty(), "{file} uses no operator metric");
        for name in used {
            assert!(
                exported(name),
                "{file}: {name} is not exported by the operator"
            );
        }
    }
}
