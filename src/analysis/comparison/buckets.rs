//! Cumulative Prometheus histogram buckets (`le` labels, `+Inf`) turned into
//! counts per bucket that both revisions share. Whatever the query returned,
//! the result is counts or a reason, never a panic.

/// At most this many buckets per revision; a histogram with more is
/// refused (a query that forgot `sum by (le)` returns one per series).
pub const MAX_BUCKETS: usize = 200;

/// One bucket as Prometheus answered: its `le` label and cumulative count.
#[derive(Clone, Debug, PartialEq)]
pub struct RawBucket {
    pub le: String,
    pub count: f64,
}

/// One revision's histogram: ascending upper bounds (the last is +Inf) and
/// cumulative counts, cleaned up.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub cumulative: Vec<f64>,
    /// What had to be repaired, for the message.
    pub notes: Vec<String>,
}

impl Histogram {
    /// Requests counted (the +Inf bucket); 0 for an empty answer.
    pub fn total(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }
}

/// Reads one revision's buckets. An empty answer is an empty histogram (no
/// requests yet); a bucket set without `+Inf`, a `le` that is not a number
/// or NaN counts cannot be read.
pub fn histogram(raw: &[RawBucket]) -> Result<Histogram, String> {
    if raw.is_empty() {
        return Ok(Histogram {
            bounds: vec![f64::INFINITY],
            cumulative: vec![0.0],
            notes: Vec::new(),
        });
    }
    if raw.len() > MAX_BUCKETS {
        return Err(format!(
            "{} buckets (at most {MAX_BUCKETS}): aggregate by le only, e.g. sum by (le) (...)",
            raw.len()
        ));
    }
    let mut buckets = Vec::with_capacity(raw.len());
    let mut negative = 0;
    for b in raw {
        let bound = parse_le(&b.le)?;
        if !b.count.is_finite() {
            return Err(format!(
                "bucket le=\"{}\" has no finite count ({})",
                short(&b.le),
                b.count
            ));
        }
        let count = if b.count < 0.0 {
            negative += 1;
            0.0
        } else {
            b.count
        };
        buckets.push((bound, count));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(
            "two buckets with the same le: aggregate by le only, e.g. sum by (le) (...)".into(),
        );
    }
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return Err(
            "no le=\"+Inf\" bucket, so the number of requests is unknown: keep every bucket, e.g. sum by (le) (...)"
                .into(),
        );
    }
    let mut notes = Vec::new();
    if negative > 0 {
        notes.push(format!(
            "{negative} negative bucket count(s) (a counter reset? use increase()) counted as 0"
        ));
    }
    // Cumulative counts never fall with a higher bound; increase() on each
    // bucket series can break that slightly. Like histogram_quantile, keep
    // the running maximum.
    let mut fixed = 0;
    let mut highest: f64 = 0.0;
    let mut cumulative = Vec::with_capacity(buckets.len());
    for (_, count) in &buckets {
        if *count < highest {
            fixed += 1;
        }
        highest = highest.max(*count);
        cumulative.push(highest);
    }
    if fixed > 0 {
        notes.push(format!(
            "{fixed} bucket(s) below a lower bucket raised to it (cumulative counts never fall)"
        ));
    }
    Ok(Histogram {
        bounds: buckets.iter().map(|b| b.0).collect(),
        cumulative,
        notes,
    })
}

fn parse_le(le: &str) -> Result<f64, String> {
    match le.trim() {
        "+Inf" | "Inf" | "inf" | "+inf" => Ok(f64::INFINITY),
        other => match other.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!(
                "a bucket's le label \"{}\" is not a number",
                short(le)
            )),
        },
    }
}

/// Labels come from the user's metrics: keep them short in messages.
fn short(text: &str) -> String {
    text.chars().take(32).collect()
}

/// Two histograms on the bounds they share: counts per bucket of each, in
/// ascending order. Bounds only one side has are merged into the next
/// shared one (cumulative counts at a shared bound are exact for both).
#[derive(Clone, Debug, PartialEq)]
pub struct Aligned {
    pub bounds: Vec<f64>,
    pub new: Vec<f64>,
    pub stable: Vec<f64>,
    /// Set when the bucket sets differed.
    pub note: Option<String>,
}

pub fn align(new: &Histogram, stable: &Histogram) -> Aligned {
    let shared: Vec<f64> = new
        .bounds
        .iter()
        .copied()
        .filter(|b| stable.bounds.contains(b))
        .collect();
    let per_bucket = |h: &Histogram| {
        let mut previous = 0.0;
        shared
            .iter()
            .map(|bound| {
                let at = h
                    .bounds
                    .iter()
                    .position(|b| b == bound)
                    .map_or(previous, |i| h.cumulative[i]);
                let count = (at - previous).max(0.0);
                previous = at;
                count
            })
            .collect::<Vec<f64>>()
    };
    let differ = new.bounds != stable.bounds;
    let note = differ.then(|| {
        format!(
            "bucket bounds differ ({} new, {} stable): compared on the {} both have",
            new.bounds.len(),
            stable.bounds.len(),
            shared.len()
        )
    });
    Aligned {
        new: per_bucket(new),
        stable: per_bucket(stable),
        bounds: shared,
        note,
    }
}

/// A quantile from counts per bucket, interpolated linearly inside its
/// bucket as PromQL's histogram_quantile does (the first bucket starts at 0
/// when its bound is positive; in the +Inf bucket, the highest finite
/// bound). `None` without requests or without a finite bound.
pub fn quantile(bounds: &[f64], counts: &[f64], q: f64) -> Option<f64> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = 0.0;
    for (i, (&upper, &count)) in bounds.iter().zip(counts).enumerate() {
        if count > 0.0 && below + count >= rank {
            if upper.is_infinite() {
                return bounds[..i].last().copied();
            }
            let lower = match i {
                0 if upper > 0.0 => 0.0,
                0 => return Some(upper),
                _ => bounds[i - 1],
            };
            return Some(lower + (upper - lower) * (rank - below) / count);
        }
        below += count;
    }
    None
}
