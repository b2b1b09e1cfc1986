//! One round's queries, run as a task of its own after the reconcile that
//! started it has returned: every gate's query (and its baseline) at once,
//! judged by `crate::analysis::verdict`; comparison gates go through
//! `compare`.

use std::collections::HashMap;
use std::time::Duration;

use super::Outbound;
use super::compare;
use crate::analysis::run::Check;
use crate::analysis::template::{self, Vars};
use crate::analysis::verdict::{Measurement, judge};
use crate::api::{AnalysisSpec, MetricGate};

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
        let asker = compare::Asker {
            prometheus: &outbound.prometheus,
            address: spec.prometheus.address.as_str(),
            timeout,
            token,
        };
        let comparisons = compare::round(spec, &asker, &vars, stable_vars.as_ref());
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
    asker: &compare::Asker<'_>,
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
