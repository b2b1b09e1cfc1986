//! The statistical judge: compares the new revision with the stable one on
//! the same queries over the same window, and says Fail, Pass or "still
//! collecting", with the evidence a person needs to check it. Pure: the
//! answers Prometheus gave in, a [`Judgement`] out. The distributions come
//! from `statrs`; reference values from scipy/statsmodels are the tests'
//! fixtures (`fixtures/generate.py`).

pub mod buckets;
pub mod mann_whitney;
pub mod two_proportions;

use buckets::RawBucket;
use two_proportions::{Margin, Tally};

use super::verdict::{Answer, Judgement, num, significant};
use crate::api::{ComparisonEvidence, ComparisonSpec, ComparisonTest, Finding, Verdict, WorseWhen};

/// What Prometheus answered for one revision.
#[derive(Clone, Debug, PartialEq)]
pub enum Answers {
    /// TwoProportions: the `failures` and `total` queries.
    Proportions { failures: Answer, total: Answer },
    /// MannWhitney: the `buckets` query, bucket by bucket, or why not.
    Buckets(Result<Vec<RawBucket>, Answer>),
}

/// Both revisions' answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub new: Answers,
    /// `None` when there is no stable revision to compare with (the first
    /// rollout, or after promotion).
    pub stable: Option<Answers>,
}

/// Parses `margin` as the CRD accepts it: "10%" or "0.002".
pub fn parse_margin(text: &str) -> Result<Margin, String> {
    let invalid = || format!("margin {text:?} is neither a percentage such as 10% nor a number");
    match text.trim().strip_suffix('%') {
        Some(p) => p
            .parse::<f64>()
            .ok()
            .filter(|p| p.is_finite() && *p >= 0.0)
            .map(|p| Margin::Relative(p / 100.0))
            .ok_or_else(invalid),
        None => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && (0.0..1.0).contains(d))
            .map(Margin::Absolute)
            .ok_or_else(invalid),
    }
}

/// The bound a comparison applies, for `status.analysis.metrics[].bound`.
pub fn describe(spec: &ComparisonSpec) -> String {
    let confidence = pct(spec.confidence);
    let samples = count(spec.min_samples as f64);
    match spec.test {
        ComparisonTest::TwoProportions => format!(
            "failure rate not above stable's by more than {} at {confidence} confidence, from {samples} requests each (TwoProportions)",
            spec.margin.as_deref().unwrap_or("0")
        ),
        ComparisonTest::MannWhitney => format!(
            "no shift {} than stable's at {confidence} confidence, from {samples} samples each (MannWhitney)",
            match spec.worse_when.unwrap_or_default() {
                WorseWhen::Higher => "higher",
                WorseWhen::Lower => "lower",
            }
        ),
    }
}

pub fn judge(name: &str, spec: &ComparisonSpec, m: &Measured) -> Judgement {
    let bound = describe(spec);
    let Some(stable) = &m.stable else {
        return Judgement {
            verdict: Verdict::Pass,
            on_data: true,
            value: None,
            baseline: None,
            bound,
            message: "no stable revision to compare with: the comparison does not apply".into(),
            evidence: None,
        };
    };
    let result = match (&m.new, stable) {
        (
            Answers::Proportions { failures, total },
            Answers::Proportions {
                failures: stable_failures,
                total: stable_total,
            },
        ) => proportions(
            name,
            spec,
            (failures, total),
            (stable_failures, stable_total),
        ),
        (Answers::Buckets(new), Answers::Buckets(stable)) => histograms(name, spec, new, stable),
        _ => Err("the two revisions were measured with different tests".to_string()),
    };
    match result {
        Ok(mut j) => {
            j.bound = bound;
            j
        }
        Err(why) => Judgement {
            verdict: Verdict::Inconclusive,
            on_data: false,
            value: None,
            baseline: None,
            bound,
            message: why,
            evidence: None,
        },
    }
}

/// A count from a query: an empty answer is 0 (no failure series yet, no
/// requests yet); a negative one (a counter reset read with delta()) is 0
/// with a note.
fn count_of(answer: &Answer, what: &str, notes: &mut Vec<String>) -> Result<f64, String> {
    match answer {
        Answer::Value(v) if *v < 0.0 => {
            notes.push(format!(
                "{what} was negative ({}: a counter reset? use increase()), counted as 0",
                num(*v)
            ));
            Ok(0.0)
        }
        Answer::Value(v) => Ok(*v),
        Answer::NoData(_) => Ok(0.0),
        Answer::Error(why) => Err(format!("Prometheus gave no answer for {what}: {why}")),
    }
}

fn counts(
    failures: &Answer,
    total: &Answer,
    side: &str,
    notes: &mut Vec<String>,
) -> Result<Tally, String> {
    let f = count_of(failures, &format!("{side} failures"), notes)?;
    let t = count_of(total, &format!("{side} total"), notes)?;
    // increase() extrapolates each series on its own: allow rounding.
    if f > t * (1.0 + 1e-6) + 0.5 {
        return Err(format!(
            "{side} failures ({}) exceed its total ({}): the failures and total queries must count the same requests",
            count(f),
            count(t)
        ));
    }
    Ok(Tally {
        failures: f.min(t),
        total: t,
    })
}

fn proportions(
    name: &str,
    spec: &ComparisonSpec,
    new: (&Answer, &Answer),
    stable: (&Answer, &Answer),
) -> Result<Judgement, String> {
    let margin = parse_margin(spec.margin.as_deref().unwrap_or("0"))?;
    let mut notes = Vec::new();
    let new = counts(new.0, new.1, "new", &mut notes)?;
    let stable = counts(stable.0, stable.1, "stable", &mut notes)?;
    let min = spec.min_samples as f64;
    let c = two_proportions::compare(&new, &stable, margin, spec.confidence);
    if ![c.p_worse, c.lower, c.upper].iter().all(|v| v.is_finite()) {
        return Err(out_of_range(new.total, stable.total));
    }
    let finding = if new.total < min || stable.total < min {
        Finding::Collecting
    } else if c.lower > c.margin {
        Finding::Worse
    } else if c.upper < c.margin {
        Finding::NotWorse
    } else {
        Finding::Undecided
    };
    let message = proportions_message(name, spec, margin, (&new, &stable), &c, finding, notes);
    let evidence = ComparisonEvidence {
        test: ComparisonTest::TwoProportions,
        finding,
        samples: new.total.round() as i64,
        stable_samples: stable.total.round() as i64,
        min_samples: spec.min_samples,
        failures: Some(new.failures.round() as i64),
        stable_failures: Some(stable.failures.round() as i64),
        difference: finite(c.difference),
        lower_bound: finite(c.lower),
        upper_bound: finite(c.upper),
        margin: finite(c.margin),
        p_value: finite(c.p_worse),
        confidence: spec.confidence,
    };
    Ok(judgement(
        finding,
        finite(new.rate()),
        finite(stable.rate()),
        message,
        evidence,
    ))
}

/// "error-rate 1.5% (3/200) vs 1.0% (100/10,000): not enough data…".
fn proportions_message(
    name: &str,
    spec: &ComparisonSpec,
    margin: Margin,
    (new, stable): (&Tally, &Tally),
    c: &two_proportions::Comparison,
    finding: Finding,
    notes: Vec<String>,
) -> String {
    let min = spec.min_samples as f64;
    let side = |c: &Tally| {
        format!(
            "{} ({}/{})",
            rate_pct(c.rate()),
            count(c.failures),
            count(c.total)
        )
    };
    let pp = |v: f64| signed(v * 100.0) + " pp";
    let margin_text = match margin {
        Margin::Relative(r) => format!(
            "{} ({} of stable's rate)",
            num(c.margin * 100.0) + " pp",
            pct(r)
        ),
        Margin::Absolute(_) => num(c.margin * 100.0) + " pp",
    };
    let conclusion = match finding {
        Finding::Collecting => collecting(new.total, stable.total, min, "requests"),
        Finding::Worse => "worse than stable by more than the margin".into(),
        Finding::NotWorse => "not worse than stable by more than the margin".into(),
        Finding::Undecided => {
            "undecided: the bounds straddle the margin, collecting more data".into()
        }
    };
    let mut message = format!(
        "{name} {} vs {}: {conclusion}; difference {}, {} bounds [{}, {}], margin {margin_text}; {} (TwoProportions)",
        side(new),
        side(stable),
        pp(c.difference),
        pct(spec.confidence),
        signed(c.lower * 100.0),
        pp(c.upper),
        p_value(c.p_worse)
    );
    for note in notes {
        message.push_str(&format!("; {note}"));
    }
    message
}

fn histograms(
    name: &str,
    spec: &ComparisonSpec,
    new: &Result<Vec<RawBucket>, Answer>,
    stable: &Result<Vec<RawBucket>, Answer>,
) -> Result<Judgement, String> {
    let new_h = read_histogram("new", new)?;
    let stable_h = read_histogram("stable", stable)?;
    let aligned = buckets::align(&new_h, &stable_h);
    let n1: f64 = aligned.new.iter().sum();
    let n0: f64 = aligned.stable.iter().sum();
    let min = spec.min_samples as f64;
    let worse_when = spec.worse_when.unwrap_or_default();
    let worse = match worse_when {
        WorseWhen::Higher => mann_whitney::Worse::Higher,
        WorseWhen::Lower => mann_whitney::Worse::Lower,
    };
    let median_new = buckets::quantile(&aligned.bounds, &aligned.new, 0.5);
    let median_stable = buckets::quantile(&aligned.bounds, &aligned.stable, 0.5);
    let collecting_now = n1 < min || n0 < min;
    let shift = (!collecting_now)
        .then(|| mann_whitney::compare(&aligned.new, &aligned.stable, worse, spec.confidence));
    if shift.is_some_and(|s| {
        ![s.p_worse, s.delta, s.lower, s.upper]
            .iter()
            .all(|v| v.is_finite())
    }) {
        return Err(out_of_range(n1, n0));
    }
    let alpha = 1.0 - spec.confidence;
    let finding = match &shift {
        None => Finding::Collecting,
        Some(s) if s.p_worse < alpha => Finding::Worse,
        Some(_) => Finding::NotWorse,
    };
    let direction = match worse_when {
        WorseWhen::Higher => "higher",
        WorseWhen::Lower => "lower",
    };
    let median = |m: Option<f64>| m.map_or_else(|| "-".to_string(), |v| significant(v, 3));
    let conclusion = match finding {
        Finding::Collecting => collecting(n1, n0, min, "samples"),
        Finding::Worse => format!("shifted {direction} than stable (worse)"),
        _ => format!("no significant shift {direction} than stable"),
    };
    let mut message = format!(
        "{name} median {} ({} samples) vs {} ({}): {conclusion}",
        median(median_new),
        count(n1),
        median(median_stable),
        count(n0),
    );
    if let Some(s) = &shift {
        message.push_str(&format!(
            "; shift (Cliff's delta, + is worse) {}, {} bounds [{}, {}]; {}",
            signed(s.delta),
            pct(spec.confidence),
            signed(s.lower),
            signed(s.upper),
            p_value(s.p_worse)
        ));
    }
    message.push_str(&format!(" (MannWhitney, worse when {worse_when:?})"));
    for note in new_h
        .notes
        .iter()
        .map(|n| format!("new: {n}"))
        .chain(stable_h.notes.iter().map(|n| format!("stable: {n}")))
        .chain(aligned.note.clone())
    {
        message.push_str(&format!("; {note}"));
    }
    let evidence = shift_evidence(spec, finding, (n1, n0), shift.as_ref());
    Ok(judgement(
        finding,
        median_new.and_then(finite),
        median_stable.and_then(finite),
        message,
        evidence,
    ))
}

fn read_histogram(
    side: &str,
    answer: &Result<Vec<RawBucket>, Answer>,
) -> Result<buckets::Histogram, String> {
    match answer {
        Ok(raw) => buckets::histogram(raw).map_err(|why| format!("{side} histogram: {why}")),
        Err(Answer::NoData(_)) => buckets::histogram(&[]),
        Err(Answer::Error(why)) => Err(format!("Prometheus gave no answer for {side}: {why}")),
        Err(Answer::Value(_)) => Err(format!(
            "{side} histogram: the query returned one number; it must return one series per le bucket"
        )),
    }
}

/// (samples of the new revision, of the stable one)
fn shift_evidence(
    spec: &ComparisonSpec,
    finding: Finding,
    (n1, n0): (f64, f64),
    shift: Option<&mann_whitney::Shift>,
) -> ComparisonEvidence {
    ComparisonEvidence {
        test: ComparisonTest::MannWhitney,
        finding,
        samples: n1.round() as i64,
        stable_samples: n0.round() as i64,
        min_samples: spec.min_samples,
        failures: None,
        stable_failures: None,
        difference: shift.and_then(|s| finite(s.delta)),
        lower_bound: shift.and_then(|s| finite(s.lower)),
        upper_bound: shift.and_then(|s| finite(s.upper)),
        margin: None,
        p_value: shift.and_then(|s| finite(s.p_worse)),
        confidence: spec.confidence,
    }
}

/// The evidence on one line, for `kubectl model status`: "TwoProportions:
/// Worse; samples 10,000 vs 10,000 (min 1,000); failures 150 vs 100;
/// difference +0.5 pp, 95% bounds [+0.241, +0.759 pp], margin 0.1 pp;
/// p = 0.0056".
pub fn summary(e: &ComparisonEvidence) -> String {
    let mut parts = vec![
        format!("{}: {}", e.test, e.finding),
        format!(
            "samples {} vs {} (min {})",
            count(e.samples as f64),
            count(e.stable_samples as f64),
            count(e.min_samples as f64)
        ),
    ];
    if let (Some(f), Some(s)) = (e.failures, e.stable_failures) {
        parts.push(format!(
            "failures {} vs {}",
            count(f as f64),
            count(s as f64)
        ));
    }
    let scale = |v: f64| match e.test {
        ComparisonTest::TwoProportions => signed(v * 100.0),
        ComparisonTest::MannWhitney => signed(v),
    };
    let unit = match e.test {
        ComparisonTest::TwoProportions => " pp",
        ComparisonTest::MannWhitney => "",
    };
    if let Some(d) = e.difference {
        let mut text = format!(
            "{} {}{unit}",
            match e.test {
                ComparisonTest::TwoProportions => "difference",
                ComparisonTest::MannWhitney => "Cliff's delta",
            },
            scale(d)
        );
        if let (Some(lo), Some(hi)) = (e.lower_bound, e.upper_bound) {
            text.push_str(&format!(
                ", {} bounds [{}, {}{unit}]",
                pct(e.confidence),
                scale(lo),
                scale(hi)
            ));
        }
        if let Some(m) = e.margin {
            text.push_str(&format!(", margin {} pp", num(m * 100.0)));
        }
        parts.push(text);
    }
    if let Some(p) = e.p_value {
        parts.push(p_value(p));
    }
    parts.join("; ")
}

fn judgement(
    finding: Finding,
    value: Option<f64>,
    baseline: Option<f64>,
    message: String,
    evidence: ComparisonEvidence,
) -> Judgement {
    let verdict = match finding {
        Finding::Worse => Verdict::Fail,
        Finding::NotWorse => Verdict::Pass,
        Finding::Collecting | Finding::Undecided => Verdict::Inconclusive,
    };
    Judgement {
        verdict,
        on_data: matches!(finding, Finding::Worse | Finding::NotWorse),
        value,
        baseline,
        bound: String::new(),
        message,
        evidence: Some(evidence),
    }
}

/// "not enough data, 200 of 1,000 requests" (the side that is short).
fn collecting(new: f64, stable: f64, min: f64, unit: &str) -> String {
    if new < min {
        format!("not enough data, {} of {} {unit}", count(new), count(min))
    } else {
        format!(
            "not enough data, stable has {} of {} {unit}",
            count(stable),
            count(min)
        )
    }
}

/// Tally no floating-point computation can compare (e.g. 1e300): an
/// answer, not a crash and never a Pass.
fn out_of_range(new: f64, stable: f64) -> String {
    format!(
        "the counts ({new:e} new, {stable:e} stable) are out of the range the test can compute with"
    )
}

/// Status holds no NaN or infinity (JSON has none).
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Whole numbers with thousands separators: "10,000".
pub fn count(v: f64) -> String {
    let rounded = v.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A fraction as a percentage with three significant digits: "95%".
pub fn pct(v: f64) -> String {
    format!("{}%", significant(v * 100.0, 3))
}

/// A rate as a percentage, at least one decimal: "1.0%", "1.5%", "0.03%".
pub fn rate_pct(v: f64) -> String {
    let text = significant(v * 100.0, 3);
    if text.contains('.') {
        format!("{text}%")
    } else {
        format!("{text}.0%")
    }
}

fn signed(v: f64) -> String {
    let text = significant(v, 3);
    if v > 0.0 { format!("+{text}") } else { text }
}

fn p_value(p: f64) -> String {
    if p < 1e-4 {
        "p < 0.0001".into()
    } else {
        format!("p = {}", significant(p, 2))
    }
}

#[cfg(test)]
mod tests;
