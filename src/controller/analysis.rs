//! The measure step of the pipeline: runs a round of Prometheus queries when
//! `crate::analysis::schedule` says one is due. Scheduling, verdicts and the
//! analysis' progress are pure, in `crate::analysis`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;

use super::compare;
use super::context::Context;
use super::observe::Snapshot;
use super::rounds::{BUSY_RETRY, Limits, Rounds};
use super::status::Revisions;
use crate::alerts::Deliverer;
use crate::analysis::prometheus::Prometheus;
use crate::analysis::run::{self, Check, Mode, Step};
use crate::analysis::schedule::{Analysed, Due, Schedule, conclude, schedule};
use crate::analysis::template::{self, Vars};
use crate::analysis::verdict::{Measurement, effective_limits, judge};
use crate::analysis::window;
use crate::api::{AnalysisSpec, AnalysisStatus, MetricGate, Outcome, SecretKeyRef};
use crate::egress::{self, Policy};
use crate::metrics::{BoundLabels, CheckLabels, MetricValueLabels, Metrics};
use crate::validate::Timing;

/// A bearer token is read again after this long, so a rotated token is
/// picked up without an API request per check.
const TOKEN_TTL: Duration = Duration::from_secs(300);

/// The operator's connections to the world outside the API server:
/// Prometheus, Alertmanager, webhooks. Shared by every watched namespace.
pub struct Outbound {
    pub prometheus: Prometheus,
    pub deliverer: Arc<Deliverer>,
    /// Slots for metric rounds (a bounded share of the workers).
    rounds: Rounds,
    client: Client,
    /// When each guarded revision was last checked. Post-promotion rounds
    /// write status only when a verdict changes, so the time of the last
    /// round lives here; after a restart the first round simply runs at once.
    guard_rounds: Mutex<HashMap<String, Instant>>,
    tokens: Mutex<HashMap<String, (Instant, String)>>,
}

impl Outbound {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        policy: Arc<Policy>,
        limits: Limits,
    ) -> Result<Self, reqwest::Error> {
        let http = egress::http_client()?;
        Ok(Self {
            rounds: Rounds::new(limits),
            prometheus: Prometheus::new(http.clone(), policy.clone()),
            deliverer: Arc::new(Deliverer::new(http, policy, client.clone(), metrics)),
            client,
            guard_rounds: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    async fn bearer_token(&self, namespace: &str, secret: &SecretKeyRef) -> Result<String, String> {
        let key = format!("{namespace}/{}/{}", secret.name, secret.key);
        if let Some((at, token)) = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(token.clone());
        }
        let token = crate::secrets::read_key(
            &self.client,
            namespace,
            secret,
            crate::secrets::Purpose::PrometheusToken,
        )
        .await
        .map_err(|e| format!("bearer token: {e}"))?;
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), token.clone()));
        Ok(token)
    }

    /// Drops what is kept in memory for a deleted ModelDeployment: its
    /// guard rounds and alert delivery state. (Tokens are kept per Secret,
    /// not per object, and expire after `TOKEN_TTL`.)
    pub fn forget(&self, namespace: &str, name: &str) {
        let prefix = format!("{namespace}/{name}/");
        self.guard_rounds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (at, _)| at.elapsed() < TOKEN_TTL);
        self.deliverer.forget(&prefix);
    }

    fn since_guard_round(&self, key: &str) -> Option<Duration> {
        let rounds = self.guard_rounds.lock().unwrap_or_else(|e| e.into_inner());
        rounds.get(key).map(Instant::elapsed)
    }

    fn guard_round_started(&self, key: String) {
        let mut rounds = self.guard_rounds.lock().unwrap_or_else(|e| e.into_inner());
        rounds.insert(key, Instant::now());
    }
}

/// The revision the Deployment runs, as the analysis needs it.
pub(super) struct Running<'a> {
    pub revision: i64,
    pub model: &'a str,
    pub version: &'a str,
}

pub(super) struct Subject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub previous: &'a Revisions,
    /// Model version of a revision, for the baseline query.
    pub version_of: &'a (dyn Fn(i64) -> Option<String> + Sync),
    /// The running revision is a canary: the stable revision serves at the
    /// same time, so a relative bound compares with its value in the same
    /// round only, never with a baseline remembered from an earlier one.
    pub side_by_side: bool,
}

/// The measure step: a round of metric checks of the running revision when
/// one is due (`schedule`), and what it concludes (`conclude`). Only the
/// queries are I/O.
pub(super) async fn measure(
    seen: &Snapshot,
    timing: Option<&Timing>,
    requested: i64,
    ctx: &Context,
) -> Analysed {
    let previous = &seen.previous;
    let (Some(spec), Some(timing)) = (seen.md.spec.rollout.analysis.as_ref(), timing) else {
        return Analysed {
            status: None,
            ..Analysed::unchanged(None)
        };
    };
    let Some(running) = running(seen, requested) else {
        return Analysed::unchanged(previous.analysis.as_ref());
    };
    let guard_key = format!("{}/{}/{}", seen.namespace, seen.name, running.revision);
    let stored = previous.analysis.as_ref();
    let due = Due {
        revision: running.revision,
        outcome: previous
            .history
            .iter()
            .find(|e| e.revision == running.revision)
            .map_or(Outcome::Progressing, |e| e.outcome),
        is_stable: previous.stable == Some(running.revision),
        health: &seen.health,
        post_promotion: spec.post_promotion.enabled,
        paused: seen.md.spec.paused,
        interval: timing.interval,
        stored,
        retry_token: seen.retry_token.as_deref(),
        since_guard_round: ctx.outbound.since_guard_round(&guard_key),
        now: &seen.now,
    };
    let Some(plan) = schedule(&due) else {
        return Analysed::unchanged(stored);
    };
    // A due round runs only with a free slot; without one, this pass
    // judges nothing new (as if the round were not due yet) and comes back.
    let slot = match plan.due {
        true => ctx.outbound.rounds.try_start(&seen.namespace),
        false => None,
    };
    let busy = plan.due && slot.is_none();
    let checks = match slot {
        Some(slot) => {
            if plan.mode == Mode::Guard {
                ctx.outbound.guard_round_started(guard_key);
            }
            let checks = query_round(seen, spec, timing, &running, &plan, requested, ctx).await;
            drop(slot);
            Some(checks)
        }
        None => None,
    };
    let (status, gate) = run::advance(Step {
        spec,
        bake_time: timing.bake_time,
        revision: running.revision,
        mode: plan.mode,
        previous: stored,
        retry_token: seen.retry_token.as_deref(),
        now: &seen.now,
        checks,
    });
    let mut analysed = conclude(
        plan.mode,
        status,
        gate,
        spec.post_promotion.action,
        timing.interval,
        &previous.history,
        &seen.now,
    );
    if busy {
        analysed.next_round = Some(BUSY_RETRY);
    }
    analysed
}

/// One round of queries over the analysis window, recorded on `/metrics`.
async fn query_round(
    seen: &Snapshot,
    spec: &AnalysisSpec,
    timing: &Timing,
    running: &Running<'_>,
    plan: &Schedule,
    requested: i64,
    ctx: &Context,
) -> Vec<Check> {
    let stored = seen.previous.analysis.as_ref().filter(|_| plan.continuing);
    let version_of = |r: i64| {
        seen.served_of(r, requested)
            .map(|s| s.model.version.clone())
    };
    let subject = Subject {
        namespace: &seen.namespace,
        name: &seen.name,
        previous: &seen.previous,
        version_of: &version_of,
        side_by_side: seen.canary_is_current,
    };
    // Both revisions are measured over the same window: by default since
    // this analysis started (the revision started serving), 1m to 1h.
    let window = window::promql(window::window(
        timing.window,
        stored.and_then(|s| s.started_at.as_ref()),
        &seen.now,
    ));
    let checks = round(spec, &subject, running, plan.mode, stored, ctx, &window).await;
    record_metrics(&ctx.metrics, &subject, spec, &checks);
    checks
}

/// The revision the Deployment runs, with its model and version.
fn running(seen: &Snapshot, requested: i64) -> Option<Running<'_>> {
    let revision = seen.current?;
    let served = seen.served_of(revision, requested)?;
    Some(Running {
        revision,
        model: served.model_name(),
        version: &served.model.version,
    })
}

/// Queries every metric (and its baseline) at once.
async fn round(
    spec: &AnalysisSpec,
    subject: &Subject<'_>,
    running: &Running<'_>,
    mode: Mode,
    stored: Option<&AnalysisStatus>,
    ctx: &Context,
    window: &str,
) -> Vec<Check> {
    let timeout = Duration::from_secs(u64::try_from(spec.prometheus.timeout_seconds).unwrap_or(5));
    let token = match &spec.prometheus.bearer_token_secret_ref {
        Some(secret) => ctx
            .outbound
            .bearer_token(subject.namespace, secret)
            .await
            .map(Some),
        None => Ok(None),
    };
    let vars = Vars {
        namespace: subject.namespace,
        name: subject.name,
        model: running.model,
        version: running.version,
        revision: running.revision,
        window,
    };
    // Relative bounds compare with the Stable revision while a new one rolls
    // out; after promotion there is nothing serving to compare with.
    let baseline_revision = match mode {
        Mode::Rollout { .. } => subject.previous.stable.filter(|s| *s != running.revision),
        Mode::Guard => None,
    };
    let baseline_version = baseline_revision.and_then(|r| (subject.version_of)(r));
    let stable_vars = match (baseline_revision, &baseline_version) {
        (Some(revision), Some(version)) => Some(Vars {
            version,
            revision,
            ..vars.clone()
        }),
        _ => None,
    };
    let asker = compare::Asker {
        prometheus: &ctx.outbound.prometheus,
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
            let last_baseline = stored
                .filter(|_| !subject.side_by_side)
                .and_then(|s| s.metrics.iter().find(|m| m.name == gate.name))
                .and_then(|m| m.baseline);
            plain_check(
                gate,
                spec,
                &asker,
                &vars,
                stable_vars.as_ref(),
                last_baseline,
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

fn record_metrics(metrics: &Metrics, subject: &Subject<'_>, spec: &AnalysisSpec, checks: &[Check]) {
    for check in checks {
        let labels = MetricValueLabels {
            namespace: subject.namespace.to_string(),
            modeldeployment: subject.name.to_string(),
            metric: check.name.clone(),
        };
        if let Some(gate) = spec.metrics.iter().find(|g| g.name == check.name) {
            let (lower, upper) = effective_limits(gate, check.judgement.baseline);
            for (bound, limit) in [("lower", lower), ("upper", upper)] {
                let labels = BoundLabels {
                    namespace: labels.namespace.clone(),
                    modeldeployment: labels.modeldeployment.clone(),
                    metric: labels.metric.clone(),
                    bound: bound.into(),
                };
                match limit {
                    Some(l) => {
                        metrics.analysis_bound.get_or_create(&labels).set(l);
                    }
                    None => {
                        metrics.analysis_bound.remove(&labels);
                    }
                }
            }
        }
        // No value: NaN, which Prometheus shows as such (not as a stale 0).
        metrics
            .analysis_value
            .get_or_create(&labels)
            .set(check.judgement.value.unwrap_or(f64::NAN));
        metrics
            .analysis_checks
            .get_or_create(&CheckLabels {
                verdict: check.judgement.verdict.to_string(),
            })
            .inc();
    }
}
