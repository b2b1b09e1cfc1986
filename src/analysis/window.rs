//! `{{window}}`: how far back the queries of an analysis look.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The default window is never shorter than this: `increase()` needs two
/// samples in it at the common 15s or 30s scrape intervals.
pub const SHORTEST: Duration = Duration::from_secs(60);
/// Nor longer than this: a long analysis compares recent behaviour, and
/// Prometheus range queries stay cheap.
pub const LONGEST: Duration = Duration::from_secs(3600);

/// `spec.rollout.analysis.window` when set; otherwise the time since the
/// analysis started (when the revision started serving), from 1m to 1h.
pub fn window(fixed: Option<Duration>, started_at: Option<&Time>, now: &Time) -> Duration {
    if let Some(fixed) = fixed {
        return fixed.max(Duration::from_secs(1));
    }
    let since = started_at
        .map(|s| u64::try_from(now.0.as_second() - s.0.as_second()).unwrap_or(0))
        .unwrap_or(0);
    Duration::from_secs(since).clamp(SHORTEST, LONGEST)
}

/// As PromQL writes a duration: whole seconds, rounded up ("90s").
pub fn promql(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!("{}s", secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + s).unwrap())
    }

    #[test]
    fn table() {
        let cases = [
            (
                "fixed",
                Some(Duration::from_secs(600)),
                Some(at(0)),
                at(30),
                "600s",
            ),
            (
                "fixed below a second",
                Some(Duration::from_millis(500)),
                None,
                at(0),
                "1s",
            ),
            (
                "just started: the shortest",
                None,
                Some(at(0)),
                at(5),
                "60s",
            ),
            ("since the start", None, Some(at(0)), at(754), "754s"),
            ("capped", None, Some(at(0)), at(7200), "3600s"),
            ("no start known", None, None, at(0), "60s"),
            ("clock behind the start", None, Some(at(100)), at(0), "60s"),
        ];
        for (name, fixed, started, now, want) in cases {
            assert_eq!(
                promql(window(fixed, started.as_ref(), &now)),
                want,
                "{name}"
            );
        }
    }
}
