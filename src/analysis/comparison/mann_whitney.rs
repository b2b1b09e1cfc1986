//! Mann-Whitney U on binned data: two histograms over the same buckets,
//! every observation in a bucket tied with the others in it. Is the new
//! revision's distribution shifted the bad way?
//!
//! Normal approximation with the tie correction and the continuity
//! correction, as `scipy.stats.mannwhitneyu(method="asymptotic")`: with
//! histograms of hundreds of requests and a handful of buckets the exact
//! distribution is out of reach and not needed.

use statrs::distribution::{ContinuousCDF, Normal};

/// Which way is worse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Worse {
    Higher,
    Lower,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shift {
    /// U of the new sample: pairs (new, stable) where the new observation
    /// is higher, ties counting one half.
    pub u_new: f64,
    /// Cliff's delta oriented so that positive is worse: P(new worse than
    /// stable) - P(new better), from -1 to 1; 0 is no shift.
    pub delta: f64,
    /// Bounds of `delta`, each one-sided at the confidence level, from the
    /// variance of U without a shift (an approximation, for reading; the
    /// verdict rests on the p-value).
    pub lower: f64,
    pub upper: f64,
    /// p-value of "no shift the bad way" (small: shifted the bad way).
    pub p_worse: f64,
}

/// `new` and `stable` hold counts per bucket, the same buckets in
/// ascending order, none negative, each side with a positive total. Counts
/// too large to compute with give NaN, for the caller to refuse.
pub fn compare(new: &[f64], stable: &[f64], worse: Worse, confidence: f64) -> Shift {
    let n1: f64 = new.iter().sum();
    let n0: f64 = stable.iter().sum();
    let n = n1 + n0;
    let mut below = 0.0;
    let mut u_new = 0.0;
    let mut ties = 0.0;
    for (a, b) in new.iter().zip(stable) {
        u_new += a * (below + b / 2.0);
        below += b;
        let t = a + b;
        ties += t * t * t - t;
    }
    let pairs = n1 * n0;
    let mean = pairs / 2.0;
    let variance = if n > 1.0 {
        pairs / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))
    } else {
        0.0
    };
    // NaN (counts too large to square) stays NaN for the caller to see;
    // `max` would turn it into 0.
    let sd = if variance > 0.0 || variance.is_nan() {
        variance.sqrt()
    } else {
        0.0
    };
    if !(sd.is_finite() && u_new.is_finite()) {
        return Shift {
            u_new,
            delta: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
            p_worse: f64::NAN,
        };
    }
    let u_worse = match worse {
        Worse::Higher => u_new,
        Worse::Lower => pairs - u_new,
    };
    let normal = Normal::standard();
    // Everything in one bucket: no shift can be seen at all.
    let p_worse = if sd > 0.0 {
        normal.sf((u_worse - mean - 0.5) / sd)
    } else {
        1.0
    };
    let (delta, half) = if pairs > 0.0 {
        (
            2.0 * u_worse / pairs - 1.0,
            normal.inverse_cdf(confidence) * 2.0 * sd / pairs,
        )
    } else {
        (0.0, 0.0)
    };
    Shift {
        u_new,
        delta,
        lower: (delta - half).clamp(-1.0, 1.0),
        upper: (delta + half).clamp(-1.0, 1.0),
        p_worse,
    }
}
