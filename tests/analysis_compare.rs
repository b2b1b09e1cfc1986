//! Statistical comparison gates end to end: the real Prometheus scrapes a
//! test exporter serving per-version request counters and latency
//! histograms; the operator compares the new version with the stable one.
//! Setup: tests/support/gates.rs.
//!
//! The exporter serves each version's counts as they would be over the
//! analysis window, and the queries read them with `max_over_time(...
//! [{{window}}])`: exact numbers, where `increase()` would extrapolate
//! them (the judge takes either).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use model_operator::api::{
    AnalysisPhase, ComparisonTest, Finding, ModelDeployment, Outcome, Verdict,
};
use serde_json::{Value, json};
use support::gates::*;
use support::*;

fn series(metric: &str) -> String {
    format!(
        r#"max(max_over_time({metric}{{namespace="{{{{namespace}}}}",model_version="{{{{version}}}}"}}[{{{{window}}}}]))"#
    )
}

/// The error-rate comparison every proportions test uses: a regression of
/// more than 25% of the stable rate, at 90% confidence, from 1,000
/// requests each.
fn error_rate_gate() -> Value {
    json!({"name": "error-rate", "comparison": {
        "test": "TwoProportions",
        "failures": series("model_request_failures"),
        "total": series("model_requests"),
        "margin": "25%",
        "confidence": 0.90,
        "minSamples": 1000,
    }})
}

fn latency_gate() -> Value {
    json!({"name": "latency", "comparison": {
        "test": "MannWhitney",
        "buckets": r#"sum by (le) (max_over_time(model_latency_seconds_bucket{namespace="{{namespace}}",model_version="{{version}}"}[{{window}}]))"#,
        "worseWhen": "Higher",
        "confidence": 0.95,
        "minSamples": 500,
    }})
}

fn gates(metrics: Value, bake_time: &str) -> Value {
    json!({
        "prometheus": {"address": prometheus(), "timeoutSeconds": 2},
        "interval": "2s",
        "bakeTime": bake_time,
        "failureLimit": 0,
        "inconclusiveLimit": 2,
        "metrics": metrics,
    })
}

/// Per version: (failures, requests) and per-bucket latency counts.
struct Traffic<'a> {
    version: &'a str,
    failures: u64,
    requests: u64,
    latency: Option<&'a [u64; 5]>,
}

const BOUNDS: [&str; 5] = ["0.05", "0.1", "0.25", "0.5", "+Inf"];
const STABLE_LATENCY: [u64; 5] = [100, 300, 400, 150, 50];
/// 30% of the mass one bucket up.
const SLOWER_LATENCY: [u64; 5] = [70, 240, 370, 225, 95];

fn serve(s: &Setup, traffic: &[Traffic<'_>]) {
    let ns = &s.ns.name;
    let mut text = String::new();
    for t in traffic {
        let labels = format!(r#"namespace="{ns}",model_version="{}""#, t.version);
        text.push_str(&format!("model_requests{{{labels}}} {}\n", t.requests));
        text.push_str(&format!(
            "model_request_failures{{{labels}}} {}\n",
            t.failures
        ));
        if let Some(latency) = t.latency {
            let mut cumulative = 0;
            for (le, count) in BOUNDS.iter().zip(latency) {
                cumulative += count;
                text.push_str(&format!(
                    "model_latency_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}\n"
                ));
            }
        }
    }
    s.exporter.as_ref().expect("exporter").set(&text);
}

/// Waits until Prometheus has scraped `metric` of `version`.
async fn scraped(s: &Setup, metric: &str, version: &str, want: f64) {
    let query = format!(
        r#"max({metric}{{namespace="{}",model_version="{version}"}})"#,
        s.ns.name
    );
    prometheus_sees(&query, Some(want), TIMEOUT).await;
}

fn check<'a>(m: &'a ModelDeployment, metric: &str) -> Option<&'a model_operator::api::MetricCheck> {
    m.status
        .as_ref()?
        .analysis
        .as_ref()?
        .metrics
        .iter()
        .find(|c| c.name == metric)
}

fn history_check(
    m: &ModelDeployment,
    revision: i64,
    metric: &str,
) -> Option<model_operator::api::MetricCheck> {
    history_entry(m, revision)?
        .analysis
        .into_iter()
        .find(|c| c.name == metric)
}

#[tokio::test]
async fn thin_evidence_keeps_collecting_where_a_relative_bound_rolls_back() {
    let s = setup("compare-thin").await;
    serve(
        &s,
        &[
            Traffic {
                version: "1.0",
                failures: 100,
                requests: 10_000,
                latency: None,
            },
            Traffic {
                version: "2.0",
                failures: 3,
                requests: 200,
                latency: None,
            },
        ],
    );
    scraped(&s, "model_requests", "2.0", 200.0).await;
    // The same data behind a plain relative bound: 1.5% is more than 20%
    // above 1.0%.
    let ratio = format!(
        "{} / {}",
        series("model_request_failures"),
        series("model_requests")
    );
    let plain = gates(
        json!([{"name": "error-rate", "query": ratio, "maxIncreasePercent": 20.0}]),
        "4s",
    );
    s.create_named("plain", gated("1.0", plain, json!(null)))
        .await;
    s.create(gated(
        "1.0",
        gates(json!([error_rate_gate()]), "4s"),
        json!(null),
    ))
    .await;
    s.wait_named("plain", "promote 1.0 (plain)", |m| stable(m) == Some(1))
        .await;
    // The first revision has nothing to compare with: its comparison does
    // not apply.
    let m = s.wait("promote 1.0", |m| stable(m) == Some(1)).await;
    let first = history_check(&m, 1, "error-rate").expect("checks in history");
    assert!(
        first.message.contains("no stable revision to compare with"),
        "{first:?}"
    );
    // From now on the comparison bakes long: collecting is not counted
    // before the bake time is over.
    s.mds
        .patch(
            "m",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"rollout": {"analysis": {"bakeTime": "10m"}}}}),
            ),
        )
        .await
        .unwrap();

    s.set_version_of("plain", "2.0").await;
    s.set_version("2.0").await;
    let plain = s
        .wait_named("plain", "roll 2.0 back on the relative bound", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    let entry = history_entry(&plain, 2).unwrap();
    assert!(
        entry
            .message
            .contains("0.015 is above 0.012 (baseline 0.01 +20%)"),
        "{}",
        entry.message
    );

    // Meanwhile the comparison keeps collecting: several rounds, nothing
    // counted, nothing rolled back, nothing promoted.
    let seen = s
        .wait("collect on 2.0", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.analysis.as_ref())
                .is_some_and(|a| a.revision == 2)
                && check(m, "error-rate").is_some_and(|c| c.evidence.is_some())
        })
        .await;
    let first_check = check(&seen, "error-rate").unwrap().checked_at.clone();
    // A later round, or a decision on 2.0 (which must not happen).
    let m = s
        .wait("a later round on 2.0", |m| {
            check(m, "error-rate")
                .is_some_and(|c| c.checked_at != first_check && c.evidence.is_some())
                || outcome(m, 2) != Some(Outcome::Progressing)
        })
        .await;
    assert_eq!(
        outcome(&m, 2),
        Some(Outcome::Progressing),
        "{:?}",
        check(&m, "error-rate")
    );
    let c = check(&m, "error-rate").unwrap();
    assert_eq!(c.verdict, Verdict::Inconclusive);
    assert!(
        c.message.contains(
            "error-rate 1.5% (3/200) vs 1.0% (100/10,000): not enough data, 200 of 1,000 requests"
        ),
        "{}",
        c.message
    );
    let e = c.evidence.as_ref().unwrap();
    assert_eq!(
        (
            e.test,
            e.finding,
            e.samples,
            e.stable_samples,
            e.failures,
            e.stable_failures
        ),
        (
            ComparisonTest::TwoProportions,
            Finding::Collecting,
            200,
            10_000,
            Some(3),
            Some(100)
        )
    );
    assert_eq!((c.failed, c.inconclusive, c.passed), (0, 0, 0), "{c:?}");
    // Both versions over the same window, since 2.0 started serving (at
    // least 1m): the queries as sent say which.
    let window = c
        .query
        .split('[')
        .nth(1)
        .and_then(|w| w.split("s]").next())
        .and_then(|w| w.parse::<u64>().ok());
    assert!(
        window.is_some_and(|w| (60..=3600).contains(&w)),
        "{}",
        c.query
    );
    assert_eq!(outcome(&m, 2), Some(Outcome::Progressing));
    assert_eq!(stable(&m), Some(1));
    let analysis = m.status.as_ref().unwrap().analysis.as_ref().unwrap();
    assert_ne!(
        analysis.phase,
        AnalysisPhase::Inconclusive,
        "{}",
        analysis.message
    );
}

#[tokio::test]
async fn a_significant_regression_is_rolled_back_with_its_p_value() {
    let s = setup("compare-worse").await;
    serve(
        &s,
        &[
            Traffic {
                version: "1.0",
                failures: 100,
                requests: 10_000,
                latency: None,
            },
            Traffic {
                version: "2.0",
                failures: 150,
                requests: 10_000,
                latency: None,
            },
        ],
    );
    scraped(&s, "model_request_failures", "2.0", 150.0).await;
    s.create(gated(
        "1.0",
        gates(json!([error_rate_gate()]), "4s"),
        json!({"alertmanager": {"url": alertmanager()}}),
    ))
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    s.set_version("2.0").await;
    let m = s
        .wait("roll 2.0 back", |m| {
            outcome(m, 2) == Some(Outcome::RolledBack)
        })
        .await;
    s.wait_template(1).await;
    let entry = history_entry(&m, 2).unwrap();
    assert_eq!(entry.reason, "AnalysisFailed");
    for part in [
        "error-rate 1.5% (150/10,000) vs 1.0% (100/10,000): worse than stable by more than the margin",
        "p = 0.056",
        "TwoProportions",
    ] {
        assert!(
            entry.message.contains(part),
            "{:?} lacks {part:?}",
            entry.message
        );
    }
    let c = history_check(&m, 2, "error-rate").expect("checks kept in history");
    let e = c.evidence.expect("evidence in history");
    assert_eq!((c.verdict, e.finding), (Verdict::Fail, Finding::Worse));
    assert!(e.p_value.is_some_and(|p| p > 0.05 && p < 0.06), "{e:?}");
    assert!(e.lower_bound.unwrap() > e.margin.unwrap(), "{e:?}");
    assert_eq!(stable(&m), Some(1));
    let events = s.events().await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "RolledBack" && note.contains("p = 0.056")),
        "no RolledBack event with the p-value: {events:#?}"
    );
    // The alert carries the same evidence.
    let alert = s
        .wait_alert(
            json!({"alertname": "ModelRolledBack", "modeldeployment": "m", "revision": "2"}),
        )
        .await;
    let description = alert["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    for part in ["150/10,000", "p = 0.056", "TwoProportions"] {
        assert!(description.contains(part), "{description:?} lacks {part:?}");
    }
}

#[tokio::test]
async fn a_rate_within_the_margin_passes_and_promotes() {
    let s = setup("compare-pass").await;
    serve(
        &s,
        &[
            Traffic {
                version: "1.0",
                failures: 100,
                requests: 10_000,
                latency: None,
            },
            Traffic {
                version: "2.0",
                failures: 101,
                requests: 10_000,
                latency: None,
            },
        ],
    );
    scraped(&s, "model_request_failures", "2.0", 101.0).await;
    s.create(gated(
        "1.0",
        gates(json!([error_rate_gate()]), "4s"),
        json!(null),
    ))
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    s.set_version("2.0").await;
    let m = s.wait("promote 2.0", |m| stable(m) == Some(2)).await;
    let c = history_check(&m, 2, "error-rate").expect("checks kept in history");
    assert_eq!(c.verdict, Verdict::Pass);
    assert!(
        c.message.contains(
            "1.01% (101/10,000) vs 1.0% (100/10,000): not worse than stable by more than the margin"
        ),
        "{}",
        c.message
    );
    let e = c.evidence.expect("evidence");
    assert_eq!(
        (e.finding, e.samples, e.stable_samples),
        (Finding::NotWorse, 10_000, 10_000)
    );
    assert!(e.upper_bound.unwrap() < e.margin.unwrap(), "{e:?}");
}

#[tokio::test]
async fn latency_shifted_one_bucket_up_fails_and_an_identical_histogram_passes() {
    let s = setup("compare-latency").await;
    serve(
        &s,
        &[
            Traffic {
                version: "1.0",
                failures: 0,
                requests: 1000,
                latency: Some(&STABLE_LATENCY),
            },
            Traffic {
                version: "2.0",
                failures: 0,
                requests: 1000,
                latency: Some(&STABLE_LATENCY),
            },
            Traffic {
                version: "3.0",
                failures: 0,
                requests: 1000,
                latency: Some(&SLOWER_LATENCY),
            },
        ],
    );
    let inf = |v: &str| {
        format!(
            r#"model_latency_seconds_bucket{{namespace="{}",model_version="{v}",le="+Inf"}}"#,
            s.ns.name
        )
    };
    for v in ["1.0", "2.0", "3.0"] {
        prometheus_sees(&inf(v), Some(1000.0), TIMEOUT).await;
    }
    s.create(gated(
        "1.0",
        gates(json!([latency_gate()]), "4s"),
        json!(null),
    ))
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    s.set_version("2.0").await;
    let m = s
        .wait("promote 2.0 (identical latency)", |m| stable(m) == Some(2))
        .await;
    let c = history_check(&m, 2, "latency").expect("checks in history");
    assert_eq!(c.verdict, Verdict::Pass, "{}", c.message);
    assert!(
        c.message
            .contains("no significant shift higher than stable"),
        "{}",
        c.message
    );
    assert_eq!(
        c.evidence.as_ref().map(|e| (e.samples, e.stable_samples)),
        Some((1000, 1000))
    );

    s.set_version("3.0").await;
    let m = s
        .wait("roll 3.0 back (slower)", |m| {
            outcome(m, 3) == Some(Outcome::RolledBack)
        })
        .await;
    let entry = history_entry(&m, 3).unwrap();
    for part in [
        "latency median 0.177 (1,000 samples) vs 0.138 (1,000): shifted higher than stable (worse)",
        "p < 0.0001",
        "MannWhitney",
    ] {
        assert!(
            entry.message.contains(part),
            "{:?} lacks {part:?}",
            entry.message
        );
    }
    assert_eq!(stable(&m), Some(2));
}

#[tokio::test]
async fn the_comparison_gates_example_is_accepted_by_the_api_server() {
    assert_example_accepted("compare-example", "config/examples/comparison-gates.yaml").await;
}

#[tokio::test]
async fn differing_bucket_sets_are_compared_and_a_histogram_without_inf_stops_the_rollout() {
    let s = setup("compare-buckets").await;
    let ns = s.ns.name.clone();
    let bucket_lines = |version: &str, buckets: &[(&str, u64)]| -> String {
        buckets
            .iter()
            .map(|(le, count)| {
                format!(
                    "model_latency_seconds_bucket{{namespace=\"{ns}\",model_version=\"{version}\",le=\"{le}\"}} {count}\n"
                )
            })
            .collect()
    };
    let mut text = bucket_lines(
        "1.0",
        &[
            ("0.05", 100),
            ("0.1", 400),
            ("0.25", 800),
            ("0.5", 950),
            ("+Inf", 1000),
        ],
    );
    // 2.0 has one more bound; on the bounds both have, the same counts.
    text.push_str(&bucket_lines(
        "2.0",
        &[
            ("0.05", 100),
            ("0.075", 250),
            ("0.1", 400),
            ("0.25", 800),
            ("0.5", 950),
            ("+Inf", 1000),
        ],
    ));
    // 3.0 lost its +Inf bucket: the number of requests is unknown.
    text.push_str(&bucket_lines("3.0", &[("0.05", 100), ("0.1", 400)]));
    s.exporter.as_ref().expect("exporter").set(&text);
    for (version, le, want) in [("2.0", "+Inf", 1000.0), ("3.0", "0.1", 400.0)] {
        let query = format!(
            r#"model_latency_seconds_bucket{{namespace="{ns}",model_version="{version}",le="{le}"}}"#
        );
        prometheus_sees(&query, Some(want), TIMEOUT).await;
    }
    s.create(gated(
        "1.0",
        gates(json!([latency_gate()]), "4s"),
        json!(null),
    ))
    .await;
    s.wait("promote 1.0", |m| stable(m) == Some(1)).await;

    s.set_version("2.0").await;
    let m = s
        .wait("promote 2.0 (same latency, finer buckets)", |m| {
            stable(m) == Some(2)
        })
        .await;
    let c = history_check(&m, 2, "latency").expect("checks in history");
    assert_eq!(c.verdict, Verdict::Pass, "{}", c.message);
    assert!(
        c.message
            .contains("bucket bounds differ (6 new, 5 stable): compared on the 5 both have"),
        "{}",
        c.message
    );

    s.set_version("3.0").await;
    let m = s
        .wait("stop 3.0 (no +Inf bucket)", |m| {
            m.status
                .as_ref()
                .and_then(|s| s.analysis.as_ref())
                .is_some_and(|a| a.revision == 3 && a.phase == AnalysisPhase::Inconclusive)
        })
        .await;
    let c = check(&m, "latency").unwrap();
    assert_eq!(c.verdict, Verdict::Inconclusive);
    assert!(
        c.message.contains("new histogram: no le=\"+Inf\" bucket"),
        "{}",
        c.message
    );
    assert_eq!(
        outcome(&m, 3),
        Some(Outcome::Progressing),
        "neither promoted nor rolled back"
    );
    assert_eq!(stable(&m), Some(2));
}
