//! Every request the operator makes beyond the API server: Prometheus
//! queries (`prometheus`, `queries`) run in rounds off the
//! reconcile path (`rounds`), alert deliveries (`deliver`, with
//! Alertmanager's shapes in `alertmanager_bodies`), where each
//! purpose's requests may go (`policy`), how every request is sent and
//! bounded (`egress`) and the Secrets they read (`secrets`). Shared by
//! every watched namespace.

pub mod alertmanager_bodies;
pub mod deliver;
pub mod egress;
pub mod endpoints;
pub mod policy;
pub mod prometheus;
pub mod queries;
pub mod rounds;
pub mod secrets;
pub mod slots;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;

use crate::api::SecretKeyRef;
use crate::metrics::Metrics;
use deliver::Deliverer;
use policy::Policy;
use prometheus::Prometheus;
use rounds::{Finished, Limits, Rounds};

/// A bearer token is read again after this long, so a rotated token is
/// picked up without an API request per check.
const TOKEN_TTL: Duration = Duration::from_secs(300);

/// The operator's connections to the world outside the API server:
/// Prometheus, Alertmanager, webhooks. Shared by every watched namespace.
pub struct Outbound {
    pub prometheus: Prometheus,
    pub deliverer: Arc<Deliverer>,
    /// Metric rounds in flight, their slots and their results.
    pub rounds: Rounds,
    /// Every query is scoped to its ModelDeployment's namespace.
    pub scope_queries: bool,
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
            scope_queries: policy.scopes_queries(),
            prometheus: Prometheus::new(http.clone(), policy.clone(), limits.per_endpoint),
            deliverer: Arc::new(Deliverer::new(http, policy, client.clone(), metrics)),
            client,
            guard_rounds: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub async fn bearer_token(
        &self,
        namespace: &str,
        secret: &SecretKeyRef,
    ) -> Result<String, String> {
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
        let token = secrets::read_key(
            &self.client,
            namespace,
            secret,
            secrets::Purpose::PrometheusToken,
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
    /// round in flight (cancelled) or its result, guard rounds and alert
    /// delivery state. (Tokens are kept per Secret, not per object, and
    /// expire after `TOKEN_TTL`.)
    /// Entries held per ModelDeployment (and per Secret, for tokens), by
    /// kind, for `model_operator_state_entries`.
    pub fn entries(&self) -> [(&'static str, usize); 3] {
        let lock =
            |m: &Mutex<HashMap<String, Instant>>| m.lock().unwrap_or_else(|e| e.into_inner()).len();
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).len();
        [
            ("guard_rounds", lock(&self.guard_rounds)),
            ("bearer_tokens", tokens),
            ("analysis_rounds", self.rounds.entries()),
        ]
    }

    pub fn forget(&self, namespace: &str, name: &str) {
        self.rounds.forget(&format!("{namespace}/{name}"));
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

    /// A round judged by a pass that failed: its retry judges it again.
    /// `object`: `namespace/name`.
    pub fn give_back(&self, object: &str, judged: Option<Finished>) {
        if let Some(finished) = judged {
            self.rounds.give_back(object, finished);
        }
    }

    pub fn since_guard_round(&self, key: &str) -> Option<Duration> {
        let rounds = self.guard_rounds.lock().unwrap_or_else(|e| e.into_inner());
        rounds.get(key).map(Instant::elapsed)
    }

    pub fn guard_round_started(&self, key: String) {
        let mut rounds = self.guard_rounds.lock().unwrap_or_else(|e| e.into_inner());
        rounds.insert(key, Instant::now());
    }
}
