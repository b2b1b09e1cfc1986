//! Judging one check of one metric: its value (and the stable revision's
//! value) against its bounds. Pure; every case is a table row.

use crate::api::{MetricGate, OnNoData, Verdict};

/// What Prometheus answered to one query.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// One number.
    Value(f64),
    /// An empty result or NaN: the metric does not exist (yet) for it.
    NoData(String),
    /// Prometheus could not be asked, or the answer was not one number.
    Error(String),
}

/// One check's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// The query as sent.
    pub query: String,
    pub value: Answer,
    /// The stable revision's answer to the same query; `None` when no relative
    /// bound applies (no such bound, or no stable revision to compare with).
    pub baseline: Option<Answer>,
    /// The baseline the previous check of this analysis saw: the stable
    /// revision's series often disappears once its pods are replaced.
    pub last_baseline: Option<f64>,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// True when the verdict rests on a real value (a Pass that counts
    /// towards promotion).
    pub on_data: bool,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    pub bound: String,
    pub message: String,
    /// A comparison's evidence (`None` for a query with bounds).
    pub evidence: Option<crate::api::ComparisonEvidence>,
}

/// Relative comparisons tolerate floating-point noise, so a value equal to
/// its baseline never fails a 0% bound.
const EPSILON: f64 = 1e-9;

pub fn judge(gate: &MetricGate, m: &Measurement, on_no_data: OnNoData) -> Judgement {
    let (baseline, baseline_note) = match &m.baseline {
        None => (None, None),
        Some(Answer::Value(b)) => (Some(*b), None),
        Some(Answer::NoData(why)) | Some(Answer::Error(why)) => match m.last_baseline {
            Some(b) => (Some(b), Some(format!("baseline last seen (now: {why})"))),
            None => (None, Some(format!("no baseline: {why}"))),
        },
    };
    let relative_wanted = m.baseline.is_some();
    let bounds = Bounds::of(gate, baseline);
    let judged = |verdict, on_data, value, message| Judgement {
        verdict,
        on_data,
        value,
        baseline,
        bound: bounds.describe(),
        message,
        evidence: None,
    };
    let value = match &m.value {
        Answer::Value(v) => *v,
        Answer::Error(why) => {
            let message = format!("Prometheus gave no answer: {why}");
            return judged(Verdict::Inconclusive, false, None, message);
        }
        Answer::NoData(why) => {
            let message = format!("no data: {why} (onNoData: {on_no_data:?})");
            return judged(no_data_verdict(on_no_data), false, None, message);
        }
    };
    let broken: Vec<String> = bounds
        .limits
        .iter()
        .filter(|l| !l.holds(value))
        .map(|l| format!("{} {} {}", num(value), l.broken_word(), l.describe()))
        .collect();
    if !broken.is_empty() {
        return judged(Verdict::Fail, true, Some(value), broken.join("; "));
    }
    let relative_missing = relative_wanted
        && baseline.is_none()
        && (gate.max_increase_percent.is_some() || gate.max_decrease_percent.is_some());
    if relative_missing {
        let why = baseline_note.unwrap_or_else(|| "no baseline".into());
        let message = format!(
            "{} is within the absolute bounds, but the relative bound cannot be checked: {why} (onNoData: {on_no_data:?})",
            num(value)
        );
        return judged(no_data_verdict(on_no_data), false, Some(value), message);
    }
    let mut message = format!("{} is within bounds", num(value));
    if let Some(note) = baseline_note {
        message.push_str(&format!(" ({note})"));
    }
    judged(Verdict::Pass, true, Some(value), message)
}

fn no_data_verdict(on_no_data: OnNoData) -> Verdict {
    match on_no_data {
        OnNoData::Inconclusive => Verdict::Inconclusive,
        OnNoData::Fail => Verdict::Fail,
        OnNoData::Pass => Verdict::Pass,
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Limit {
    AtLeast(f64, Option<String>),
    AtMost(f64, Option<String>),
}

impl Limit {
    fn holds(&self, value: f64) -> bool {
        match self {
            Limit::AtLeast(l, _) => value >= *l - EPSILON * l.abs().max(1.0),
            Limit::AtMost(l, _) => value <= *l + EPSILON * l.abs().max(1.0),
        }
    }

    fn broken_word(&self) -> &'static str {
        match self {
            Limit::AtLeast(..) => "is below",
            Limit::AtMost(..) => "is above",
        }
    }

    /// The limit without its operator, e.g. "0.048 (baseline 0.04 +20%)".
    fn describe(&self) -> String {
        let (Limit::AtLeast(l, why) | Limit::AtMost(l, why)) = self;
        match why {
            Some(why) => format!("{} ({why})", num(*l)),
            None => num(*l),
        }
    }

    fn with_op(&self) -> String {
        let op = match self {
            Limit::AtLeast(..) => ">=",
            Limit::AtMost(..) => "<=",
        };
        format!("{op} {}", self.describe())
    }
}

struct Bounds {
    limits: Vec<Limit>,
    skipped: Option<&'static str>,
}

impl Bounds {
    fn of(gate: &MetricGate, baseline: Option<f64>) -> Self {
        let mut limits = Vec::new();
        if let Some(min) = gate.min {
            limits.push(Limit::AtLeast(min, None));
        }
        if let Some(max) = gate.max {
            limits.push(Limit::AtMost(max, None));
        }
        let relative = gate.max_increase_percent.is_some() || gate.max_decrease_percent.is_some();
        if let Some(b) = baseline {
            if let Some(p) = gate.max_increase_percent {
                let why = format!("baseline {} +{}%", num(b), num(p));
                limits.push(Limit::AtMost(b + b.abs() * p / 100.0, Some(why)));
            }
            if let Some(p) = gate.max_decrease_percent {
                let why = format!("baseline {} -{}%", num(b), num(p));
                limits.push(Limit::AtLeast(b - b.abs() * p / 100.0, Some(why)));
            }
        }
        let skipped = (relative && baseline.is_none()).then_some("relative bound without baseline");
        Self { limits, skipped }
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.limits.iter().map(Limit::with_op).collect();
        if let Some(skipped) = self.skipped {
            parts.push(skipped.to_string());
        }
        parts.join(" and ")
    }
}

/// The tightest lower and upper limit a value is checked against, absolute
/// and relative to `baseline` together (what a dashboard draws next to the
/// value).
pub fn effective_limits(gate: &MetricGate, baseline: Option<f64>) -> (Option<f64>, Option<f64>) {
    let mut lower: Option<f64> = None;
    let mut upper: Option<f64> = None;
    for limit in Bounds::of(gate, baseline).limits {
        match limit {
            Limit::AtLeast(l, _) => lower = Some(lower.map_or(l, |x| x.max(l))),
            Limit::AtMost(l, _) => upper = Some(upper.map_or(l, |x| x.min(l))),
        }
    }
    (lower, upper)
}

/// Numbers as a person writes them: at most 6 significant digits, very
/// large and very small ones in scientific notation.
pub fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&magnitude) {
        return format!("{v:.5e}")
            .replace(".00000e", "e")
            .trim_end_matches('0')
            .to_string();
    }
    significant(v, 6)
}

/// `v` rounded to `digits` significant digits, without trailing zeros.
pub fn significant(v: f64, digits: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return num(if v == 0.0 { 0.0 } else { v });
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = usize::try_from((digits - 1 - magnitude).max(0)).unwrap_or(0);
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(min: Option<f64>, max: Option<f64>, inc: Option<f64>, dec: Option<f64>) -> MetricGate {
        MetricGate {
            name: "m".into(),
            query: Some("q".into()),
            comparison: None,
            min,
            max,
            max_increase_percent: inc,
            max_decrease_percent: dec,
        }
    }

    fn m(value: Answer, baseline: Option<Answer>, last: Option<f64>) -> Measurement {
        Measurement {
            query: "q".into(),
            value,
            baseline,
            last_baseline: last,
        }
    }

    use Answer::{Error, NoData, Value};

    #[test]
    fn effective_limits_are_the_tightest() {
        let g = gate(Some(0.9), Some(0.05), Some(20.0), Some(10.0));
        // Without a baseline only the absolute bounds.
        assert_eq!(effective_limits(&g, None), (Some(0.9), Some(0.05)));
        // Baseline 0.04: +20% = 0.048 is tighter than 0.05; -10% = 0.036 is looser than 0.9.
        let (lower, upper) = effective_limits(&g, Some(0.04));
        assert_eq!(lower, Some(0.9));
        assert!(
            upper.is_some_and(|u| (u - 0.048).abs() < 1e-12),
            "{upper:?}"
        );
        assert_eq!(
            effective_limits(&gate(None, None, None, None), Some(1.0)),
            (None, None)
        );
    }

    #[test]
    fn table() {
        let error_rate = gate(None, Some(0.05), Some(20.0), None);
        let accuracy = gate(Some(0.9), None, None, Some(2.0));
        let nd = || NoData("empty result".into());
        let cases: Vec<(&str, MetricGate, Measurement, OnNoData, Verdict, bool, &str)> = vec![
            (
                "within max, no baseline wanted",
                gate(None, Some(0.05), None, None),
                m(Value(0.01), None, None),
                OnNoData::Inconclusive,
                Verdict::Pass,
                true,
                "0.01 is within bounds",
            ),
            (
                "above max",
                gate(None, Some(0.05), None, None),
                m(Value(0.12), None, None),
                OnNoData::Inconclusive,
                Verdict::Fail,
                true,
                "0.12 is above 0.05",
            ),
            (
                "below min",
                accuracy.clone(),
                m(Value(0.8), Some(Value(0.95)), None),
                OnNoData::Inconclusive,
                Verdict::Fail,
                true,
                "0.8 is below 0.9; 0.8 is below 0.931 (baseline 0.95 -2%)",
            ),
            (
                "relative increase too big",
                error_rate.clone(),
                m(Value(0.03), Some(Value(0.02)), None),
                OnNoData::Inconclusive,
                Verdict::Fail,
                true,
                "0.03 is above 0.024 (baseline 0.02 +20%)",
            ),
            (
                "same value as baseline passes",
                error_rate.clone(),
                m(Value(0.03), Some(Value(0.03)), None),
                OnNoData::Inconclusive,
                Verdict::Pass,
                true,
                "0.03 is within bounds",
            ),
            (
                "exactly at the relative limit passes",
                error_rate.clone(),
                m(Value(0.036), Some(Value(0.03)), None),
                OnNoData::Inconclusive,
                Verdict::Pass,
                true,
                "0.036 is within bounds",
            ),
            (
                "relative decrease too big",
                accuracy.clone(),
                m(Value(0.92), Some(Value(0.95)), None),
                OnNoData::Inconclusive,
                Verdict::Fail,
                true,
                "0.92 is below 0.931 (baseline 0.95 -2%)",
            ),
            (
                "no data is inconclusive",
                error_rate.clone(),
                m(nd(), Some(Value(0.02)), None),
                OnNoData::Inconclusive,
                Verdict::Inconclusive,
                false,
                "no data: empty result (onNoData: Inconclusive)",
            ),
            (
                "no data can fail",
                error_rate.clone(),
                m(nd(), None, None),
                OnNoData::Fail,
                Verdict::Fail,
                false,
                "no data: empty result (onNoData: Fail)",
            ),
            (
                "no data can pass, but not on data",
                error_rate.clone(),
                m(nd(), None, None),
                OnNoData::Pass,
                Verdict::Pass,
                false,
                "no data: empty result (onNoData: Pass)",
            ),
            (
                "errors are inconclusive whatever onNoData says",
                error_rate.clone(),
                m(Error("connection refused".into()), None, None),
                OnNoData::Pass,
                Verdict::Inconclusive,
                false,
                "Prometheus gave no answer: connection refused",
            ),
            (
                "baseline gone: last seen is used",
                error_rate.clone(),
                m(Value(0.03), Some(nd()), Some(0.02)),
                OnNoData::Inconclusive,
                Verdict::Fail,
                true,
                "0.03 is above 0.024 (baseline 0.02 +20%)",
            ),
            (
                "baseline never seen: relative bound unknown",
                error_rate.clone(),
                m(Value(0.01), Some(nd()), None),
                OnNoData::Inconclusive,
                Verdict::Inconclusive,
                false,
                "0.01 is within the absolute bounds, but the relative bound cannot be checked: no baseline: empty result (onNoData: Inconclusive)",
            ),
            (
                "baseline never seen but absolute bound broken",
                error_rate.clone(),
                m(Value(0.2), Some(nd()), None),
                OnNoData::Inconclusive,
                Verdict::Fail,
                true,
                "0.2 is above 0.05",
            ),
            (
                "zero baseline: any increase fails",
                gate(None, None, Some(20.0), None),
                m(Value(0.001), Some(Value(0.0)), None),
                OnNoData::Inconclusive,
                Verdict::Fail,
                true,
                "0.001 is above 0 (baseline 0 +20%)",
            ),
            (
                "no stable revision: relative bounds not applied",
                error_rate.clone(),
                m(Value(0.04), None, None),
                OnNoData::Inconclusive,
                Verdict::Pass,
                true,
                "0.04 is within bounds",
            ),
        ];
        for (name, gate, measurement, on_no_data, verdict, on_data, message) in cases {
            let j = judge(&gate, &measurement, on_no_data);
            assert_eq!(
                (j.verdict, j.on_data, j.message.as_str()),
                (verdict, on_data, message),
                "{name}"
            );
        }
    }

    #[test]
    fn bounds_are_described_with_their_baseline() {
        let g = gate(None, Some(0.05), Some(20.0), None);
        let j = judge(
            &g,
            &m(Value(0.01), Some(Value(0.04)), None),
            OnNoData::Inconclusive,
        );
        assert_eq!(j.bound, "<= 0.05 and <= 0.048 (baseline 0.04 +20%)");
        assert_eq!(j.baseline, Some(0.04));
        let j = judge(&g, &m(Value(0.01), None, None), OnNoData::Inconclusive);
        assert_eq!(j.bound, "<= 0.05 and relative bound without baseline");
    }

    #[test]
    fn numbers_read_well() {
        for (v, s) in [
            (0.047999999999999994, "0.048"),
            (0.05, "0.05"),
            (123.456789, "123.457"),
            (2.0, "2"),
            (0.0, "0"),
            (1e-7, "1e-7"),
            (0.931, "0.931"),
        ] {
            assert_eq!(num(v), s, "{v}");
        }
    }
}
