//! Two independent proportions (failures out of requests), new revision
//! against stable: is the new failure rate higher by more than a margin?
//!
//! Agresti-Caffo: one failure and one success are added to each side before
//! the Wald statistic, which keeps the test and the interval sound with zero
//! failures and small samples (Agresti & Caffo 2000), where the plain Wald
//! interval collapses to a point.

use statrs::distribution::{ContinuousCDF, Normal};

/// One revision's counts. Prometheus `increase()` extrapolates, so counts
/// need not be whole numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tally {
    pub failures: f64,
    pub total: f64,
}

impl Tally {
    /// The observed failure rate; 0 without requests.
    pub fn rate(&self) -> f64 {
        if self.total > 0.0 {
            self.failures / self.total
        } else {
            0.0
        }
    }
}

/// The smallest regression that matters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Margin {
    /// A fraction of the stable revision's observed rate (0.1 for "10%").
    Relative(f64),
    /// A difference of rates (0.002 = 0.2 percentage points).
    Absolute(f64),
}

impl Margin {
    /// The margin as a difference of rates, given the stable revision's
    /// counts (the relative margin uses its observed rate as if exact: the
    /// stable side usually has far more requests).
    pub fn absolute(&self, stable: &Tally) -> f64 {
        match *self {
            Margin::Relative(r) => r * stable.rate(),
            Margin::Absolute(d) => d,
        }
    }
}

/// What the data says about `new rate - stable rate`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// Observed difference of rates (new minus stable), unadjusted.
    pub difference: f64,
    /// Lower and upper bounds of the difference, each one-sided at the
    /// confidence level (together a two-sided interval at 2c-1).
    pub lower: f64,
    pub upper: f64,
    /// The margin as a difference of rates.
    pub margin: f64,
    /// p-value of "not worse by more than the margin" (small: a regression).
    pub p_worse: f64,
    /// p-value of "worse by at least the margin" (small: no regression).
    pub p_not_worse: f64,
}

/// Compares `new` with `stable`. Totals must not be negative and failures
/// not above totals (the caller checks and explains); `confidence` is in
/// (0.5, 1).
pub fn compare(new: &Tally, stable: &Tally, margin: Margin, confidence: f64) -> Comparison {
    let normal = Normal::standard();
    let adjusted = |c: &Tally| {
        let n = c.total + 2.0;
        let p = (c.failures + 1.0) / n;
        (p, p * (1.0 - p) / n)
    };
    let (p1, var1) = adjusted(new);
    let (p0, var0) = adjusted(stable);
    // Both variances are positive: an adjusted rate is never 0 or 1.
    let se = (var1 + var0).sqrt();
    let center = p1 - p0;
    let delta = margin.absolute(stable);
    let z = (center - delta) / se;
    let half = normal.inverse_cdf(confidence) * se;
    Comparison {
        difference: new.rate() - stable.rate(),
        lower: center - half,
        upper: center + half,
        margin: delta,
        p_worse: normal.sf(z),
        p_not_worse: normal.cdf(z),
    }
}
