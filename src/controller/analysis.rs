//! The analysis step of the pipeline: decides whether a round of metric
//! checks is due, runs its Prometheus queries, and moves the revision's
//! analysis on (the verdicts themselves are pure, in `crate::analysis`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;

use super::compare;
use super::context::Context;
use super::status::Revisions;
use crate::alerts::Deliverer;
use crate::analysis::prometheus::Prometheus;
use crate::analysis::run::{self, Check, Gate, Mode, Step};
use crate::analysis::template::{self, Vars};
use crate::analysis::verdict::{Answer, Measurement, judge};
use crate::analysis::{duration, window};
use crate::api::{AnalysisSpec, AnalysisStatus, BreachAction, Outcome, SecretKeyRef};
use crate::metrics::{CheckLabels, MetricValueLabels, Metrics};
use crate::rollout::decide::{Breach, Health};
use crate::rollout::history;

/// A bearer token is read again after this long, so a rotated token is
/// picked up without an API request per check.
const TOKEN_TTL: Duration = Duration::from_secs(300);

/// The operator's connections to the world outside the API server:
/// Prometheus, Alertmanager, webhooks. Shared by every watched namespace.
pub struct Outbound {
    pub prometheus: Prometheus,
    pub deliverer: Arc<Deliverer>,
    client: Client,
    /// When each guarded revision was last checked. Post-promotion rounds
    /// write status only when a verdict changes, so the time of the last
    /// round lives here; after a restart the first round simply runs at once.
    guard_rounds: Mutex<HashMap<String, Instant>>,
    tokens: Mutex<HashMap<String, (Instant, String)>>,
}

impl Outbound {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        // reqwest is built without a default crypto provider; use ring, like
        // the kube client. Installing twice is harmless (the first wins).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("model-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            prometheus: Prometheus::new(http.clone()),
            deliverer: Arc::new(Deliverer::new(http, client.clone(), metrics)),
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
        let token = crate::secrets::read_key(&self.client, namespace, secret)
            .await
            .map_err(|e| format!("bearer token: {e}"))?;
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), token.clone()));
        Ok(token)
    }

    fn guard_due(&self, key: &str, interval: Duration) -> bool {
        let mut rounds = self.guard_rounds.lock().unwrap_or_else(|e| e.into_inner());
        let due = rounds.get(key).is_none_or(|at| at.elapsed() >= interval);
        if due {
            rounds.insert(key.to_string(), Instant::now());
        }
        due
    }
}

/// What the analysis step hands to the decision and the status.
pub(super) struct Analysed {
    /// What `status.analysis` becomes.
    pub status: Option<AnalysisStatus>,
    /// The rollout gate of the revision running now.
    pub gate: Gate,
    pub breach: Option<Breach>,
    /// When the next round is due, for the requeue.
    pub next_round: Option<Duration>,
}

/// The revision the Deployment runs, as the analysis needs it.
pub(super) struct Running<'a> {
    pub revision: i64,
    pub model: &'a str,
    pub version: &'a str,
    pub health: &'a Health,
}

pub(super) struct Subject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub paused: bool,
    pub retry_token: Option<&'a str>,
    pub previous: &'a Revisions,
    /// Model version of a revision, for the baseline query.
    pub version_of: &'a (dyn Fn(i64) -> Option<String> + Sync),
}

pub(super) async fn analyse(
    spec: Option<&AnalysisSpec>,
    subject: &Subject<'_>,
    running: Option<Running<'_>>,
    ctx: &Context,
    now: &Time,
) -> Analysed {
    let previous = subject.previous;
    let unchanged = Analysed {
        status: previous.analysis.clone(),
        gate: Gate::Passed,
        breach: None,
        next_round: None,
    };
    let Some(spec) = spec else {
        return Analysed {
            status: None,
            ..unchanged
        };
    };
    let Some(running) = running else {
        return unchanged;
    };
    let outcome = previous
        .history
        .iter()
        .find(|e| e.revision == running.revision)
        .map_or(Outcome::Progressing, |e| e.outcome);
    let mode = match outcome {
        Outcome::Progressing => Mode::Rollout {
            complete: *running.health == Health::Complete,
        },
        Outcome::Stable
            if spec.post_promotion.enabled && previous.stable == Some(running.revision) =>
        {
            Mode::Guard
        }
        _ => return unchanged,
    };
    let interval = duration::parse(&spec.interval).unwrap_or(Duration::from_secs(30));
    let bake_time = duration::parse(&spec.bake_time).unwrap_or(Duration::from_secs(120));
    let stored = previous.analysis.as_ref();
    let continuing = run::continues(stored, running.revision, mode, subject.retry_token);
    let halted =
        continuing && stored.is_some_and(|a| a.phase == crate::api::AnalysisPhase::Inconclusive);
    let due = !subject.paused
        && !halted
        && !matches!(running.health, Health::Failed(_))
        && match mode {
            Mode::Rollout { .. } => {
                run::next_round_in(stored.filter(|_| continuing), interval, now).is_zero()
            }
            Mode::Guard => ctx.outbound.guard_due(
                &format!(
                    "{}/{}/{}",
                    subject.namespace, subject.name, running.revision
                ),
                interval,
            ),
        };
    let checks = if due {
        Some(
            round(
                spec,
                subject,
                &running,
                mode,
                stored.filter(|_| continuing),
                ctx,
                now,
            )
            .await,
        )
    } else {
        None
    };
    if let Some(checks) = &checks {
        record_metrics(&ctx.metrics, subject, checks);
    }
    let (status, gate) = run::advance(Step {
        spec,
        bake_time,
        revision: running.revision,
        mode,
        previous: stored,
        retry_token: subject.retry_token,
        now,
        checks,
    });
    let next_round =
        (status.phase != crate::api::AnalysisPhase::Inconclusive).then(|| match mode {
            Mode::Rollout { .. } => {
                run::next_round_in(Some(&status), interval, now).max(Duration::from_secs(1))
            }
            Mode::Guard => interval,
        });
    match mode {
        Mode::Rollout { .. } => Analysed {
            status: Some(status),
            gate,
            breach: None,
            next_round,
        },
        Mode::Guard => {
            let breach = match (&gate, spec.post_promotion.action) {
                (Gate::Failed(failure), BreachAction::Rollback) => Some(Breach {
                    failure: failure.clone(),
                    previous_stable: history::previous_stable(&previous.history, running.revision),
                }),
                _ => None,
            };
            Analysed {
                status: Some(status),
                gate: Gate::Passed,
                breach,
                next_round,
            }
        }
    }
}

/// Queries every metric (and its baseline) at once.
async fn round(
    spec: &AnalysisSpec,
    subject: &Subject<'_>,
    running: &Running<'_>,
    mode: Mode,
    stored: Option<&AnalysisStatus>,
    ctx: &Context,
    now: &Time,
) -> Vec<Check> {
    let timeout = Duration::from_secs(u64::try_from(spec.prometheus.timeout_seconds).unwrap_or(5));
    let address = spec.prometheus.address.as_str();
    let token = match &spec.prometheus.bearer_token_secret_ref {
        Some(secret) => ctx
            .outbound
            .bearer_token(subject.namespace, secret)
            .await
            .map(Some),
        None => Ok(None),
    };
    // Both revisions are measured over the same window: by default since
    // this analysis started (the revision started serving), 1m to 1h.
    let fixed = spec.window.as_deref().and_then(|w| duration::parse(w).ok());
    let window = window::promql(window::window(
        fixed,
        stored.and_then(|s| s.started_at.as_ref()),
        now,
    ));
    let vars = Vars {
        namespace: subject.namespace,
        name: subject.name,
        model: running.model,
        version: running.version,
        revision: running.revision,
        window: &window,
    };
    // Relative bounds compare with the Stable revision while a new one rolls
    // out; after promotion there is nothing serving to compare with.
    let baseline_revision = match mode {
        Mode::Rollout { .. } => subject.previous.stable.filter(|s| *s != running.revision),
        Mode::Guard => None,
    };
    let baseline_version = baseline_revision.and_then(|r| (subject.version_of)(r));
    let ask = |query: Result<String, String>| {
        let token = token.clone();
        async move {
            match (query, token) {
                (Err(e), _) | (_, Err(e)) => Answer::Error(e),
                (Ok(q), Ok(t)) => {
                    ctx.outbound
                        .prometheus
                        .query(address, &q, timeout, t.as_deref())
                        .await
                }
            }
        }
    };
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
        address,
        timeout,
        token: token.clone(),
    };
    let comparisons = compare::round(spec, &asker, &vars, stable_vars.as_ref());
    let plain_gates = spec.metrics.iter().filter(|g| g.comparison.is_none());
    let checks = plain_gates.map(|gate| {
        let query = template::render(gate.query.as_deref().unwrap_or(""), &vars);
        let relative = gate.max_increase_percent.is_some() || gate.max_decrease_percent.is_some();
        let baseline_query = match (baseline_revision, &baseline_version) {
            (Some(revision), Some(version)) if relative => Some(template::render(
                gate.query.as_deref().unwrap_or(""),
                &Vars {
                    version,
                    revision,
                    ..vars.clone()
                },
            )),
            _ => None,
        };
        let last_baseline = stored
            .and_then(|s| s.metrics.iter().find(|m| m.name == gate.name))
            .and_then(|m| m.baseline);
        let shown = query
            .clone()
            .unwrap_or_else(|_| gate.query.clone().unwrap_or_default());
        let ask = &ask;
        async move {
            let (value, baseline) = match baseline_query {
                Some(b) => {
                    let (v, b) = futures::join!(ask(query), ask(b));
                    (v, Some(b))
                }
                None => (ask(query).await, None),
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

fn record_metrics(metrics: &Metrics, subject: &Subject<'_>, checks: &[Check]) {
    for check in checks {
        let labels = MetricValueLabels {
            namespace: subject.namespace.to_string(),
            modeldeployment: subject.name.to_string(),
            metric: check.name.clone(),
        };
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
