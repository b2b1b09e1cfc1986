//! The queries of comparison gates: each one runs with the new revision's
//! values and the stable revision's, over the same window, and goes to the
//! pure judge (`crate::analysis::judge`). `Asker` also serves the plain
//! gates' queries.

use std::time::Duration;

use crate::analysis::judge::{self, Measured, Observed, buckets::RawBucket};
use crate::analysis::run::Check;
use crate::analysis::template::{self, Vars};
use crate::analysis::verdict::Answer;
use crate::api::{AnalysisSpec, ComparisonSpec, ComparisonTest};
use crate::outbound::prometheus::Prometheus;

/// How to reach Prometheus for this round.
pub(super) struct Asker<'a> {
    pub prometheus: &'a Prometheus,
    pub address: &'a str,
    pub timeout: Duration,
    /// The bearer token, or why it could not be read.
    pub token: Result<Option<String>, String>,
}

impl Asker<'_> {
    /// One number. Check messages reach status, Events and alerts:
    /// Prometheus's own error text stays out of them (`query_quiet`).
    pub(super) async fn number(&self, query: Result<String, String>) -> Answer {
        match (query.as_ref(), &self.token) {
            (Err(e), _) | (_, Err(e)) => Answer::Error(e.clone()),
            (Ok(q), Ok(t)) => {
                self.prometheus
                    .query_quiet(self.address, q, self.timeout, t.as_deref())
                    .await
            }
        }
    }

    async fn buckets(&self, query: Result<String, String>) -> Result<Vec<RawBucket>, Answer> {
        match (query.as_ref(), &self.token) {
            (Err(e), _) | (_, Err(e)) => Err(Answer::Error(e.clone())),
            (Ok(q), Ok(t)) => {
                self.prometheus
                    .query_buckets(self.address, q, self.timeout, t.as_deref())
                    .await
            }
        }
    }

    async fn observe(&self, comparison: &ComparisonSpec, vars: &Vars<'_>) -> Observed {
        let render = |q: &Option<String>| template::render(q.as_deref().unwrap_or(""), vars);
        match comparison.test {
            ComparisonTest::TwoProportions => {
                let (failures, total) = futures::join!(
                    self.number(render(&comparison.failures)),
                    self.number(render(&comparison.total))
                );
                Observed::Proportions { failures, total }
            }
            ComparisonTest::MannWhitney => {
                Observed::Buckets(self.buckets(render(&comparison.buckets)).await)
            }
        }
    }
}

/// Every comparison gate's check of this round, in spec order. `stable` is
/// `None` when no other revision serves (first rollout, after promotion):
/// nothing is asked then.
pub(super) async fn round(
    spec: &AnalysisSpec,
    asker: &Asker<'_>,
    new: &Vars<'_>,
    stable: Option<&Vars<'_>>,
) -> Vec<Check> {
    let checks = spec.metrics.iter().filter_map(|gate| {
        let comparison = gate.comparison.as_ref()?;
        Some(async move {
            let measured = match stable {
                Some(stable) => {
                    let (new, stable) = futures::join!(
                        asker.observe(comparison, new),
                        asker.observe(comparison, stable)
                    );
                    Measured {
                        new,
                        stable: Some(stable),
                    }
                }
                None => Measured {
                    new: Observed::Proportions {
                        failures: Answer::NoData(String::new()),
                        total: Answer::NoData(String::new()),
                    },
                    stable: None,
                },
            };
            Check {
                name: gate.name.clone(),
                query: shown_queries(comparison, new),
                judgement: judge::judge(&gate.name, comparison, &measured),
            }
        })
    });
    futures::future::join_all(checks).await
}

/// The new revision's queries of a comparison as sent, for status.
fn shown_queries(comparison: &ComparisonSpec, vars: &Vars<'_>) -> String {
    let shown = |q: &Option<String>| {
        let q = q.as_deref().unwrap_or("");
        template::render(q, vars).unwrap_or_else(|_| q.to_string())
    };
    match comparison.test {
        ComparisonTest::TwoProportions => format!(
            "failures: {}; total: {}",
            shown(&comparison.failures),
            shown(&comparison.total)
        ),
        ComparisonTest::MannWhitney => format!("buckets: {}", shown(&comparison.buckets)),
    }
}
