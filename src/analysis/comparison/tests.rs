use super::buckets::{self, RawBucket};
use super::mann_whitney::{self, Worse};
use super::two_proportions::{self, Margin, Tally};
use super::*;
use proptest::prelude::*;
use serde::Deserialize;

/// Reference values from statsmodels and scipy (fixtures/generate.py).
const REFERENCE: &str = include_str!("fixtures/reference.json");

#[derive(Deserialize)]
struct Reference {
    two_proportions: Vec<TwoProportionsCase>,
    mann_whitney: Vec<MannWhitneyCase>,
}

#[derive(Deserialize)]
struct TwoProportionsCase {
    name: String,
    failures: f64,
    total: f64,
    stable_failures: f64,
    stable_total: f64,
    margin: serde_json::Value,
    confidence: f64,
    margin_absolute: f64,
    p_worse: f64,
    p_not_worse: f64,
    lower: f64,
    upper: f64,
}

#[derive(Deserialize)]
struct MannWhitneyCase {
    name: String,
    new: Vec<f64>,
    stable: Vec<f64>,
    worse_when: String,
    u_new: f64,
    p_worse: f64,
}

fn reference() -> Reference {
    serde_json::from_str(REFERENCE).expect("reference.json")
}

/// Equal within a relative 1e-6 (p-values down to 1e-14 included), or an
/// absolute 1e-12 around zero.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-12_f64.max(want.abs() * 1e-6)
}

#[test]
fn two_proportions_match_statsmodels() {
    let cases = reference().two_proportions;
    assert!(cases.len() >= 15);
    for c in cases {
        let margin = match (c.margin.get("relative"), c.margin.get("absolute")) {
            (Some(r), None) => Margin::Relative(r.as_f64().unwrap()),
            (None, Some(a)) => Margin::Absolute(a.as_f64().unwrap()),
            other => panic!("{}: bad margin {other:?}", c.name),
        };
        let got = two_proportions::compare(
            &Tally {
                failures: c.failures,
                total: c.total,
            },
            &Tally {
                failures: c.stable_failures,
                total: c.stable_total,
            },
            margin,
            c.confidence,
        );
        for (what, got, want) in [
            ("margin", got.margin, c.margin_absolute),
            ("p_worse", got.p_worse, c.p_worse),
            ("p_not_worse", got.p_not_worse, c.p_not_worse),
            ("lower", got.lower, c.lower),
            ("upper", got.upper, c.upper),
        ] {
            assert!(close(got, want), "{}: {what} {got} != {want}", c.name);
        }
    }
}

#[test]
fn mann_whitney_matches_scipy() {
    let cases = reference().mann_whitney;
    assert!(cases.len() >= 8);
    for c in cases {
        let worse = match c.worse_when.as_str() {
            "Higher" => Worse::Higher,
            _ => Worse::Lower,
        };
        let got = mann_whitney::compare(&c.new, &c.stable, worse, 0.95);
        assert!(
            close(got.u_new, c.u_new),
            "{}: U {} != {}",
            c.name,
            got.u_new,
            c.u_new
        );
        assert!(
            close(got.p_worse, c.p_worse),
            "{}: p {} != {}",
            c.name,
            got.p_worse,
            c.p_worse
        );
    }
}

// The gate-level judge: answers in, verdict and readable evidence out.

fn proportions_spec(margin: &str, confidence: f64, min_samples: i64) -> ComparisonSpec {
    ComparisonSpec {
        test: ComparisonTest::TwoProportions,
        failures: Some("f".into()),
        total: Some("t".into()),
        margin: Some(margin.into()),
        buckets: None,
        worse_when: None,
        confidence,
        min_samples,
    }
}

fn histogram_spec(worse_when: WorseWhen, min_samples: i64) -> ComparisonSpec {
    ComparisonSpec {
        test: ComparisonTest::MannWhitney,
        failures: None,
        total: None,
        margin: None,
        buckets: Some("b".into()),
        worse_when: Some(worse_when),
        confidence: 0.95,
        min_samples,
    }
}

fn counts(failures: f64, total: f64) -> Answers {
    Answers::Proportions {
        failures: Answer::Value(failures),
        total: Answer::Value(total),
    }
}

fn measured(new: Answers, stable: Answers) -> Measured {
    Measured {
        new,
        stable: Some(stable),
    }
}

#[test]
fn proportions_verdicts() {
    let issue = proportions_spec("10%", 0.95, 1000);
    let e2e = proportions_spec("25%", 0.90, 1000);
    let cases: Vec<(&str, &ComparisonSpec, Measured, Verdict, Finding, &str)> = vec![
        (
            "3/200 vs 100/10,000: collecting",
            &issue,
            measured(counts(3.0, 200.0), counts(100.0, 10_000.0)),
            Verdict::Inconclusive,
            Finding::Collecting,
            "error-rate 1.5% (3/200) vs 1.0% (100/10,000): not enough data, 200 of 1,000 requests",
        ),
        (
            "stable short of samples",
            &issue,
            measured(counts(30.0, 2_000.0), counts(4.0, 500.0)),
            Verdict::Inconclusive,
            Finding::Collecting,
            "not enough data, stable has 500 of 1,000 requests",
        ),
        (
            "150/10,000 vs 100/10,000 fails",
            &issue,
            measured(counts(150.0, 10_000.0), counts(100.0, 10_000.0)),
            Verdict::Fail,
            Finding::Worse,
            "error-rate 1.5% (150/10,000) vs 1.0% (100/10,000): worse than stable by more than the margin; difference +0.5 pp, 95% bounds [+0.241, +0.759 pp], margin 0.1 pp (10% of stable's rate); p = 0.0056 (TwoProportions)",
        ),
        (
            "101/10,000 vs 100/10,000 at a 10% margin: undecided",
            &issue,
            measured(counts(101.0, 10_000.0), counts(100.0, 10_000.0)),
            Verdict::Inconclusive,
            Finding::Undecided,
            "undecided: the bounds straddle the margin",
        ),
        (
            "101/10,000 vs 100/10,000 at a 25% margin, 90%: passes",
            &e2e,
            measured(counts(101.0, 10_000.0), counts(100.0, 10_000.0)),
            Verdict::Pass,
            Finding::NotWorse,
            "not worse than stable by more than the margin",
        ),
        (
            "150/10,000 vs 100/10,000 at a 25% margin, 90%: fails",
            &e2e,
            measured(counts(150.0, 10_000.0), counts(100.0, 10_000.0)),
            Verdict::Fail,
            Finding::Worse,
            "p = 0.056",
        ),
        (
            "no failure series yet: 0 failures",
            &issue,
            measured(
                Answers::Proportions {
                    failures: Answer::NoData("the query returned no series".into()),
                    total: Answer::Value(5_000.0),
                },
                counts(100.0, 10_000.0),
            ),
            Verdict::Pass,
            Finding::NotWorse,
            "0.0% (0/5,000) vs 1.0% (100/10,000)",
        ),
        (
            "no requests yet: collecting",
            &issue,
            measured(
                Answers::Proportions {
                    failures: Answer::NoData("none".into()),
                    total: Answer::NoData("none".into()),
                },
                counts(100.0, 10_000.0),
            ),
            Verdict::Inconclusive,
            Finding::Collecting,
            "not enough data, 0 of 1,000 requests",
        ),
        (
            "a negative count is 0, and said so",
            &issue,
            measured(counts(-3.0, 2_000.0), counts(20.0, 2_000.0)),
            Verdict::Pass,
            Finding::NotWorse,
            "new failures was negative (-3: a counter reset? use increase()), counted as 0",
        ),
    ];
    for (name, spec, m, verdict, finding, fragment) in cases {
        let j = judge("error-rate", spec, &m);
        let evidence = j.evidence.clone().expect("evidence");
        assert_eq!(
            (j.verdict, evidence.finding),
            (verdict, finding),
            "{name}: {}",
            j.message
        );
        assert_eq!(
            j.on_data,
            matches!(verdict, Verdict::Pass | Verdict::Fail),
            "{name}"
        );
        assert!(
            j.message.contains(fragment),
            "{name}: {:?} lacks {fragment:?}",
            j.message
        );
    }
}

#[test]
fn proportions_evidence_is_complete() {
    let j = judge(
        "error-rate",
        &proportions_spec("10%", 0.95, 1000),
        &measured(counts(150.0, 10_000.0), counts(100.0, 10_000.0)),
    );
    let e = j.evidence.unwrap();
    assert_eq!(
        (
            e.test,
            e.samples,
            e.stable_samples,
            e.min_samples,
            e.failures,
            e.stable_failures
        ),
        (
            ComparisonTest::TwoProportions,
            10_000,
            10_000,
            1000,
            Some(150),
            Some(100)
        )
    );
    assert_eq!((j.value, j.baseline), (Some(0.015), Some(0.01)));
    assert!(close(e.difference.unwrap(), 0.005));
    assert!(close(e.margin.unwrap(), 0.001));
    let p = e.p_value.unwrap();
    assert!(p > 0.005 && p < 0.006, "{p}");
    assert!(e.lower_bound.unwrap() > 0.001 && e.upper_bound.unwrap() > e.lower_bound.unwrap());
    assert_eq!(e.confidence, 0.95);
    assert!(
        j.bound.contains("more than 10% at 95% confidence"),
        "{}",
        j.bound
    );
}

#[test]
fn what_cannot_be_judged_is_inconclusive_and_explained() {
    let spec = proportions_spec("10%", 0.95, 1000);
    let cases = vec![
        (
            "Prometheus error",
            measured(
                Answers::Proportions {
                    failures: Answer::Value(1.0),
                    total: Answer::Error("no answer within 2s".into()),
                },
                counts(1.0, 10.0),
            ),
            "Prometheus gave no answer for new total: no answer within 2s",
        ),
        (
            "failures above total",
            measured(counts(50.0, 10.0), counts(1.0, 10.0)),
            "new failures (50) exceed its total (10)",
        ),
        (
            "different tests",
            measured(counts(1.0, 10.0), Answers::Buckets(Ok(vec![]))),
            "different tests",
        ),
    ];
    for (name, m, fragment) in cases {
        let j = judge("e", &spec, &m);
        assert_eq!(
            (j.verdict, j.on_data),
            (Verdict::Inconclusive, false),
            "{name}"
        );
        assert!(j.evidence.is_none(), "{name}");
        assert!(j.message.contains(fragment), "{name}: {:?}", j.message);
    }
    // Tally at the end of the floating-point range: 0/0 inside the test.
    let huge = judge(
        "e",
        &proportions_spec("0", 0.95, 1000),
        &measured(counts(f64::MAX, f64::MAX), counts(f64::MAX, f64::MAX)),
    );
    assert_eq!(huge.verdict, Verdict::Inconclusive, "{}", huge.message);
    assert!(
        huge.message
            .contains("out of the range the test can compute with"),
        "{}",
        huge.message
    );
    let first = judge(
        "e",
        &spec,
        &Measured {
            new: counts(1.0, 10.0),
            stable: None,
        },
    );
    assert_eq!((first.verdict, first.on_data), (Verdict::Pass, true));
    assert!(first.message.contains("no stable revision"));
}

fn raw(buckets: &[(&str, f64)]) -> Vec<RawBucket> {
    buckets
        .iter()
        .map(|(le, count)| RawBucket {
            le: (*le).into(),
            count: *count,
        })
        .collect()
}

/// Per-bucket counts as cumulative Prometheus buckets with these bounds.
fn cumulative(bounds: &[&str], per_bucket: &[f64]) -> Vec<RawBucket> {
    let mut sum = 0.0;
    bounds
        .iter()
        .zip(per_bucket)
        .map(|(le, c)| {
            sum += c;
            RawBucket {
                le: (*le).into(),
                count: sum,
            }
        })
        .collect()
}

const BOUNDS: [&str; 5] = ["0.05", "0.1", "0.25", "0.5", "+Inf"];
const STABLE: [f64; 5] = [100.0, 300.0, 400.0, 150.0, 50.0];
const SHIFTED_UP: [f64; 5] = [70.0, 240.0, 370.0, 225.0, 95.0];

fn histograms(new: &[f64], stable: &[f64]) -> Measured {
    measured(
        Answers::Buckets(Ok(cumulative(&BOUNDS, new))),
        Answers::Buckets(Ok(cumulative(&BOUNDS, stable))),
    )
}

#[test]
fn histogram_verdicts() {
    let higher = histogram_spec(WorseWhen::Higher, 500);
    let lower = histogram_spec(WorseWhen::Lower, 500);
    let cases = vec![
        (
            "identical",
            &higher,
            histograms(&STABLE, &STABLE),
            Verdict::Pass,
            "no significant shift higher than stable",
        ),
        (
            "30% one bucket up, higher is worse",
            &higher,
            histograms(&SHIFTED_UP, &STABLE),
            Verdict::Fail,
            "shifted higher than stable (worse)",
        ),
        (
            "30% one bucket up, lower is worse",
            &lower,
            histograms(&SHIFTED_UP, &STABLE),
            Verdict::Pass,
            "no significant shift lower",
        ),
        (
            "too few samples",
            &higher,
            histograms(&[10.0, 20.0, 30.0, 0.0, 0.0], &STABLE),
            Verdict::Inconclusive,
            "not enough data, 60 of 500 samples",
        ),
        (
            "empty window",
            &higher,
            measured(
                Answers::Buckets(Err(Answer::NoData("the query returned no series".into()))),
                Answers::Buckets(Ok(cumulative(&BOUNDS, &STABLE))),
            ),
            Verdict::Inconclusive,
            "not enough data, 0 of 500 samples",
        ),
    ];
    for (name, spec, m, verdict, fragment) in cases {
        let j = judge("latency", spec, &m);
        assert_eq!(j.verdict, verdict, "{name}: {}", j.message);
        assert!(
            j.message.contains(fragment),
            "{name}: {:?} lacks {fragment:?}",
            j.message
        );
    }
    let j = judge("latency", &higher, &histograms(&SHIFTED_UP, &STABLE));
    assert!(
        j.message
            .starts_with("latency median 0.177 (1,000 samples) vs 0.138 (1,000): shifted higher"),
        "{}",
        j.message
    );
    assert!(
        j.message
            .contains("p < 0.0001 (MannWhitney, worse when Higher)"),
        "{}",
        j.message
    );
    let e = j.evidence.unwrap();
    assert_eq!(
        (e.samples, e.stable_samples, e.test),
        (1000, 1000, ComparisonTest::MannWhitney)
    );
    assert!(close(e.difference.unwrap(), 2.0 * 575_000.0 / 1e6 - 1.0));
}

#[test]
fn differing_bucket_sets_are_compared_on_the_shared_bounds() {
    // The new revision has an extra 0.075 bound: merged into 0.1.
    let new = raw(&[
        ("0.05", 100.0),
        ("0.075", 250.0),
        ("0.1", 400.0),
        ("0.25", 800.0),
        ("0.5", 950.0),
        ("+Inf", 1000.0),
    ]);
    let stable = cumulative(&BOUNDS, &STABLE);
    let j = judge(
        "latency",
        &histogram_spec(WorseWhen::Higher, 500),
        &measured(Answers::Buckets(Ok(new)), Answers::Buckets(Ok(stable))),
    );
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.message);
    assert!(
        j.message
            .contains("bucket bounds differ (6 new, 5 stable): compared on the 5 both have"),
        "{}",
        j.message
    );
}

#[test]
fn broken_histograms_are_explained() {
    let cases = vec![
        (raw(&[("0.1", 5.0), ("0.5", 9.0)]), "no le=\"+Inf\" bucket"),
        (
            raw(&[("fast", 5.0), ("+Inf", 9.0)]),
            "le label \"fast\" is not a number",
        ),
        (
            raw(&[("0.1", f64::NAN), ("+Inf", 9.0)]),
            "no finite count (NaN)",
        ),
        (
            raw(&[("0.1", 1.0), ("+Inf", f64::INFINITY)]),
            "no finite count (inf)",
        ),
        (raw(&[("0.1", 1e300), ("+Inf", 1e300)]), "out of the range"),
        (
            raw(&[("0.1", 1.0), ("0.10", 2.0), ("+Inf", 9.0)]),
            "two buckets with the same le",
        ),
    ];
    for (new, fragment) in cases {
        let j = judge(
            "latency",
            &histogram_spec(WorseWhen::Higher, 10),
            &measured(
                Answers::Buckets(Ok(new)),
                Answers::Buckets(Ok(cumulative(&BOUNDS, &STABLE))),
            ),
        );
        assert_eq!(j.verdict, Verdict::Inconclusive);
        assert!(
            j.message.contains(fragment),
            "{:?} lacks {fragment:?}",
            j.message
        );
    }
    // Repaired, and said so: a negative increase and a falling cumulative count.
    let h = buckets::histogram(&raw(&[
        ("0.1", -2.0),
        ("0.25", 10.0),
        ("0.5", 8.0),
        ("+Inf", 12.0),
    ]))
    .unwrap();
    assert_eq!(h.cumulative, vec![0.0, 10.0, 10.0, 12.0]);
    assert_eq!(h.notes.len(), 2, "{:?}", h.notes);
    let too_many: Vec<RawBucket> = (0..=buckets::MAX_BUCKETS)
        .map(|i| RawBucket {
            le: format!("{i}"),
            count: i as f64,
        })
        .collect();
    assert!(
        buckets::histogram(&too_many)
            .unwrap_err()
            .contains("buckets (at most 200)")
    );
}

#[test]
fn quantiles_interpolate_like_histogram_quantile() {
    let bounds = [0.05, 0.1, 0.25, 0.5, f64::INFINITY];
    // 500th of 1000 is 100 into the 0.1-0.25 bucket of 400.
    assert!(close(
        buckets::quantile(&bounds, &STABLE, 0.5).unwrap(),
        0.1 + 0.15 * 100.0 / 400.0
    ));
    // In the first bucket, from 0.
    assert!(close(
        buckets::quantile(&bounds, &STABLE, 0.05).unwrap(),
        0.025
    ));
    // In +Inf: the highest finite bound.
    assert_eq!(
        buckets::quantile(&bounds, &[0.0, 0.0, 0.0, 0.0, 5.0], 0.5),
        Some(0.5)
    );
    assert_eq!(buckets::quantile(&bounds, &[0.0; 5], 0.5), None);
}

#[test]
fn margins_parse_as_the_crd_accepts_them() {
    assert_eq!(parse_margin("10%"), Ok(Margin::Relative(0.1)));
    assert_eq!(parse_margin("2.5%"), Ok(Margin::Relative(0.025)));
    assert_eq!(parse_margin("0.002"), Ok(Margin::Absolute(0.002)));
    assert_eq!(parse_margin("0"), Ok(Margin::Absolute(0.0)));
    for bad in ["", "ten", "1.5", "-1%", "%"] {
        assert!(parse_margin(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn numbers_read_well() {
    assert_eq!(count(10_000.0), "10,000");
    assert_eq!(count(1_234_567.4), "1,234,567");
    assert_eq!(count(200.0), "200");
    assert_eq!(rate_pct(0.015), "1.5%");
    assert_eq!(rate_pct(0.01), "1.0%");
    assert_eq!(rate_pct(0.0101), "1.01%");
    assert_eq!(pct(0.95), "95%");
    assert_eq!(p_value(0.056489), "p = 0.056");
    assert_eq!(p_value(1e-9), "p < 0.0001");
}

fn bins() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0u32..500, 2..8).prop_map(|v| v.into_iter().map(f64::from).collect())
}

proptest! {
    /// The interval and the tests agree: the verdict rests on the bounds
    /// and the p-values alike.
    #[test]
    fn proportions_bounds_agree_with_p_values(
        x1 in 0u32..2000, extra1 in 1u32..20000, x0 in 0u32..2000, extra0 in 1u32..20000,
        relative in 0.0f64..1.0, confidence in 0.5f64..0.999,
    ) {
        let new = Tally { failures: f64::from(x1), total: f64::from(x1 + extra1) };
        let stable = Tally { failures: f64::from(x0), total: f64::from(x0 + extra0) };
        let c = two_proportions::compare(&new, &stable, Margin::Relative(relative), confidence);
        prop_assert!(c.lower <= c.upper);
        prop_assert!((c.p_worse + c.p_not_worse - 1.0).abs() < 1e-9);
        let alpha = 1.0 - confidence;
        // Away from the boundary, "lower bound above the margin" is "p below alpha".
        if (c.p_worse - alpha).abs() > 1e-9 {
            prop_assert_eq!(c.lower > c.margin, c.p_worse < alpha);
        }
        if (c.p_not_worse - alpha).abs() > 1e-9 {
            prop_assert_eq!(c.upper < c.margin, c.p_not_worse < alpha);
        }
    }

    /// One more failure on the new side never makes it look better.
    #[test]
    fn more_failures_never_help(x1 in 0u32..1000, extra in 1u32..5000, x0 in 0u32..1000, n0 in 1000u32..20000) {
        let stable = Tally { failures: f64::from(x0.min(n0)), total: f64::from(n0) };
        let total = f64::from(x1 + extra);
        let before = two_proportions::compare(&Tally { failures: f64::from(x1), total }, &stable, Margin::Relative(0.1), 0.95);
        let after = two_proportions::compare(&Tally { failures: f64::from(x1 + 1), total }, &stable, Margin::Relative(0.1), 0.95);
        prop_assert!(after.p_worse <= before.p_worse + 1e-12);
    }

    /// Higher-is-worse for (new, stable) is lower-is-worse for (stable, new).
    #[test]
    fn mann_whitney_is_symmetric(a in bins(), b in bins()) {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        prop_assume!(a.iter().sum::<f64>() > 0.0 && b.iter().sum::<f64>() > 0.0);
        let one = mann_whitney::compare(a, b, Worse::Higher, 0.95);
        let other = mann_whitney::compare(b, a, Worse::Lower, 0.95);
        prop_assert!((one.p_worse - other.p_worse).abs() < 1e-9);
        prop_assert!((one.delta - other.delta).abs() < 1e-9);
        prop_assert!(one.lower <= one.delta && one.delta <= one.upper);
    }

    /// Identical histograms never fail, whatever the direction.
    #[test]
    fn identical_histograms_never_fail(a in bins(), lower in any::<bool>(), confidence in 0.5f64..0.9999) {
        prop_assume!(a.iter().sum::<f64>() >= 10.0);
        let worse = if lower { Worse::Lower } else { Worse::Higher };
        let s = mann_whitney::compare(&a, &a, worse, confidence);
        prop_assert!(s.p_worse >= 0.5, "{}", s.p_worse);
    }

    /// Moving one observation of the new side up a bucket never lowers U.
    #[test]
    fn moving_mass_up_raises_u(a in bins(), b in bins(), at in 0usize..8) {
        let n = a.len().min(b.len());
        let (mut a, b) = (a[..n].to_vec(), b[..n].to_vec());
        let at = at % (n - 1);
        prop_assume!(a[at] > 0.0);
        let before = mann_whitney::compare(&a, &b, Worse::Higher, 0.95);
        a[at] -= 1.0;
        a[at + 1] += 1.0;
        let after = mann_whitney::compare(&a, &b, Worse::Higher, 0.95);
        prop_assert!(after.u_new >= before.u_new);
    }

    /// No verdict on data before both sides have minSamples, whatever the
    /// numbers look like.
    #[test]
    fn no_verdict_before_min_samples(
        f1 in 0u32..5000, n1 in 0u32..5000, f0 in 0u32..5000, n0 in 0u32..5000, min in 10i64..5000,
        bins_new in prop::collection::vec(0u32..1000, 5), bins_stable in prop::collection::vec(0u32..1000, 5),
    ) {
        let (n1, n0) = (f64::from(n1), f64::from(n0));
        let j = judge("e", &proportions_spec("0", 0.95, min), &measured(counts(f64::from(f1).min(n1), n1), counts(f64::from(f0).min(n0), n0)));
        if j.on_data {
            prop_assert!(n1 >= min as f64 && n0 >= min as f64, "{}", j.message);
        }
        let (a, b): (Vec<f64>, Vec<f64>) = (bins_new.iter().map(|c| f64::from(*c)).collect(), bins_stable.iter().map(|c| f64::from(*c)).collect());
        let j = judge("l", &histogram_spec(WorseWhen::Higher, min), &histograms(&a, &b));
        if j.on_data {
            prop_assert!(a.iter().sum::<f64>() >= min as f64 && b.iter().sum::<f64>() >= min as f64, "{}", j.message);
        }
    }

    /// Any counts, up to the end of the floating-point range: a verdict on
    /// data always comes with a finite p-value and bounds, never from NaN.
    #[test]
    fn verdicts_on_data_rest_on_finite_numbers(
        f1 in 0.0f64..f64::MAX, n1 in 0.0f64..f64::MAX, f0 in 0.0f64..f64::MAX, n0 in 0.0f64..f64::MAX,
        bins_new in prop::collection::vec(0.0f64..1e200, 5), bins_stable in prop::collection::vec(0.0f64..1e200, 5),
    ) {
        let proportions = judge("e", &proportions_spec("0", 0.95, 10), &measured(counts(f1.min(n1), n1), counts(f0.min(n0), n0)));
        let histograms = judge("l", &histogram_spec(WorseWhen::Higher, 10), &histograms(&bins_new, &bins_stable));
        for j in [proportions, histograms] {
            if j.on_data {
                let e = j.evidence.clone().expect("evidence");
                prop_assert!(e.p_value.is_some() && e.lower_bound.is_some() && e.upper_bound.is_some(), "{}", j.message);
            }
        }
    }

    /// Whatever Prometheus returns, reading and aligning buckets never
    /// panics; aligned counts are non-negative and keep each side's total.
    #[test]
    fn any_buckets_are_read_without_panic(
        new in prop::collection::vec(("(\\+Inf|[0-9]\\.[0-9]|x)", -10.0f64..1000.0), 0..12),
        stable in prop::collection::vec(("(\\+Inf|[0-9]\\.[0-9])", -10.0f64..1000.0), 0..12),
    ) {
        let to_raw = |v: &[(String, f64)]| v.iter().map(|(le, count)| RawBucket { le: le.clone(), count: *count }).collect::<Vec<_>>();
        let spec = histogram_spec(WorseWhen::Higher, 10);
        let j = judge("l", &spec, &measured(Answers::Buckets(Ok(to_raw(&new))), Answers::Buckets(Ok(to_raw(&stable)))));
        if let Some(e) = &j.evidence {
            prop_assert!(e.samples >= 0 && e.stable_samples >= 0);
        }
        if let (Ok(n), Ok(s)) = (buckets::histogram(&to_raw(&new)), buckets::histogram(&to_raw(&stable))) {
            let a = buckets::align(&n, &s);
            prop_assert!(a.new.iter().chain(&a.stable).all(|c| *c >= 0.0));
            prop_assert!((a.new.iter().sum::<f64>() - n.total()).abs() < 1e-6);
            prop_assert!((a.stable.iter().sum::<f64>() - s.total()).abs() < 1e-6);
        }
    }
}
