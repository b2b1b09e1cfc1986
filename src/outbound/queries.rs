//! One round's queries, run as a task of its own after the reconcile that
//! started it has returned: every gate's query (and its baseline) at once.
//! A plain gate is judged by `crate::analysis::verdict`; a comparison gate's
//! queries run with the new revision's values and the stable revision's,
//! over the same window, and go to `crate::analysis::comparison`.

use std::collections::HashMap;
use std::time::Duration;

use super::Outbound;
use crate::analysis::comparison::{self, Answers, Measured, buckets::RawBucket};
use crate::analysis::run::Check;
use crate::analysis::scope;
use crate::analysis::template::{self, Vars};
use crate::analysis::verdict::{Answer, Measurement, judge};
use crate::api::{AnalysisSpec, ComparisonSpec, ComparisonTest, MetricGate};
use crate::outbound::prometheus::Prometheus;

/// One round's queries, with everything they need owned: they run in a
/// task of their own, after the reconcile that started them has returned.
pub struct Queries {
    pub spec: AnalysisSpec,
    pub namespace: String,
    pub name: String,
    pub model: String,
    pub version: String,
    pub revision: i64,
    /// The analysis window, as PromQL.
    pub window: String,
    /// The Stable revision and its model version, when relative bounds
    /// compare with it (rollouts only).
    pub baseline: Option<(i64, String)>,
    /// Each plain gate's baseline as the previous check of this analysis
    /// saw it: the Stable revision's series often disappears once its pods
    /// are replaced.
    pub last_baselines: HashMap<String, f64>,
}

impl Queries {
    /// Queries every metric (and its baseline) at once.
    pub async fn run(&self, outbound: &Outbound) -> Vec<Check> {
        let spec = &self.spec;
        let timeout =
            Duration::from_secs(u64::try_from(spec.prometheus.timeout_seconds).unwrap_or(5));
        let token = match &spec.prometheus.bearer_token_secret_ref {
            Some(secret) => outbound
                .bearer_token(&self.namespace, secret)
                .await
                .map(Some),
            None => Ok(None),
        };
        let vars = Vars {
            namespace: &self.namespace,
            name: &self.name,
            model: &self.model,
            version: &self.version,
            revision: self.revision,
            window: &self.window,
        };
        let stable_vars = self.baseline.as_ref().map(|(revision, version)| Vars {
            version,
            revision: *revision,
            ..vars.clone()
        });
        let asker = Asker {
            prometheus: &outbound.prometheus,
            address: spec.prometheus.address.as_str(),
            timeout,
            token,
            scope: outbound.scope_queries.then_some(self.namespace.as_str()),
        };
        let comparisons = comparisons(spec, &asker, &vars, stable_vars.as_ref());
        let checks = spec
            .metrics
            .iter()
            .filter(|g| g.comparison.is_none())
            .map(|gate| {
                plain_check(
                    gate,
                    spec,
                    &asker,
                    &vars,
                    stable_vars.as_ref(),
                    self.last_baselines.get(&gate.name).copied(),
                )
            });
        let (plain, compared) = futures::join!(futures::future::join_all(checks), comparisons);
        // Spec order, as status lists them.
        let (mut plain, mut compared) = (plain.into_iter(), compared.into_iter());
        spec.metrics
            .iter()
            .filter_map(|gate| match gate.comparison {
                Some(_) => compared.next(),
                None => plain.next(),
            })
            .collect()
    }
}

/// A gate with a query and bounds: its value, and the stable revision's
/// value when a relative bound needs it.
async fn plain_check(
    gate: &MetricGate,
    spec: &AnalysisSpec,
    asker: &Asker<'_>,
    vars: &Vars<'_>,
    stable: Option<&Vars<'_>>,
    last_baseline: Option<f64>,
) -> Check {
    let written = gate.query.as_deref().unwrap_or("");
    let query = template::render(written, vars);
    let relative = gate.max_increase_percent.is_some() || gate.max_decrease_percent.is_some();
    let baseline_query = stable
        .filter(|_| relative)
        .map(|stable| template::render(written, stable));
    let shown = query.clone().unwrap_or_else(|_| written.to_string());
    let (value, baseline) = match baseline_query {
        Some(b) => {
            let (v, b) = futures::join!(asker.number(query), asker.number(b));
            (v, Some(b))
        }
        None => (asker.number(query).await, None),
    };
    let measurement = Measurement {
        query: shown.clone(),
        value,
        baseline,
        last_baseline,
    };
    Check {
        name: gate.name.clone(),
        query: shown,
        judgement: judge(gate, &measurement, spec.on_no_data),
    }
}

/// How to reach Prometheus for this round.
struct Asker<'a> {
    pub prometheus: &'a Prometheus,
    pub address: &'a str,
    pub timeout: Duration,
    /// The bearer token, or why it could not be read.
    pub token: Result<Option<String>, String>,
    /// The namespace every query is scoped to, when the admin asks.
    pub scope: Option<&'a str>,
}

impl Asker<'_> {
    /// The query as sent: every query of every gate passes here, scoped
    /// to the namespace when the admin asks (never sent unscoped).
    fn sent(&self, query: Result<String, String>) -> Result<String, String> {
        match self.scope {
            Some(namespace) => {
                query.and_then(|q| scope::to_namespace(&q, namespace).map_err(|e| e.to_string()))
            }
            None => query,
        }
    }

    /// One number. Check messages reach status, Events and alerts:
    /// Prometheus's own error text stays out of them (`query_quiet`).
    async fn number(&self, query: Result<String, String>) -> Answer {
        let query = self.sent(query);
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
        let query = self.sent(query);
        match (query.as_ref(), &self.token) {
            (Err(e), _) | (_, Err(e)) => Err(Answer::Error(e.clone())),
            (Ok(q), Ok(t)) => {
                self.prometheus
                    .query_buckets(self.address, q, self.timeout, t.as_deref())
                    .await
            }
        }
    }

    async fn ask_comparison(&self, comparison: &ComparisonSpec, vars: &Vars<'_>) -> Answers {
        let render = |q: &Option<String>| template::render(q.as_deref().unwrap_or(""), vars);
        match comparison.test {
            ComparisonTest::TwoProportions => {
                let (failures, total) = futures::join!(
                    self.number(render(&comparison.failures)),
                    self.number(render(&comparison.total))
                );
                Answers::Proportions { failures, total }
            }
            ComparisonTest::MannWhitney => {
                Answers::Buckets(self.buckets(render(&comparison.buckets)).await)
            }
        }
    }
}

/// Every comparison gate's check of this round, in spec order. `stable` is
/// `None` when no other revision serves (first rollout, after promotion):
/// nothing is asked then.
async fn comparisons(
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
                        asker.ask_comparison(comparison, new),
                        asker.ask_comparison(comparison, stable)
                    );
                    Measured {
                        new,
                        stable: Some(stable),
                    }
                }
                None => Measured {
                    new: Answers::Proportions {
                        failures: Answer::NoData(String::new()),
                        total: Answer::NoData(String::new()),
                    },
                    stable: None,
                },
            };
            Check {
                name: gate.name.clone(),
                query: shown_queries(comparison, new),
                judgement: comparison::judge(&gate.name, comparison, &measured),
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
