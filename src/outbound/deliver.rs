//! Sends alert notifications to Alertmanager (v2 API) and a webhook.
//! What to send is `status.alertOutbox` (`crate::alerts::outbox`): this only
//! attempts it. Delivery runs in its own tasks with a timeout, one batch per
//! ModelDeployment and channel at a time, with a per-channel backoff after
//! a failure: a slow or failing channel never holds up or fails a
//! reconcile; failures are logged and counted on `/metrics`. A 2xx is kept
//! here as a confirmation until the next status write removes the
//! notification from the outbox.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use serde_json::Value;
use tokio::sync::broadcast;

use super::alertmanager_bodies::{alertmanager_webhook, notification, payload};
use crate::alerts::messages::{self, About};
use crate::alerts::outbox::{self, Confirmed};
use crate::api::{
    AlertChannel, AlertNotification, AlertState, FiringAlert, SecretKeyRef, WebhookFormat,
};
use crate::metrics::{DeliveryLabels, Metrics};
use crate::outbound::egress::{self, ALERT_BODY_LIMIT, RequestFailure};
use crate::outbound::policy::{Policy, Purpose};

const RESEND_AFTER: Duration = Duration::from_secs(240);
const TIMEOUT: Duration = Duration::from_secs(5);
/// A failed channel is tried again after 2 s, doubling up to 5 minutes.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Notifications one attempt posts in the formats that take one per POST
/// (Slack, Teams, Generic): an attempt then takes at most this many
/// request timeouts, and the rest follow once its confirmations are
/// written.
const MESSAGES_PER_ATTEMPT: usize = 8;
/// How long after starting an attempt its result is looked at, should the
/// controller miss the attempt's end (`Deliverer::attempts_ended`): the
/// request timeout, the Secret read before it, and a margin.
const ATTEMPT_LOOK_AGAIN: Duration = Duration::from_secs(7);

/// Where one ModelDeployment's alerts go, and what they are about.
#[derive(Clone, Debug)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub model: String,
    pub alertmanager: Option<String>,
    pub webhook: Option<SecretKeyRef>,
    /// The webhook's body shape.
    pub format: WebhookFormat,
}

impl Target {
    fn object(&self) -> String {
        format!("{}/{}/", self.namespace, self.name)
    }

    /// What every message names.
    fn about(&self) -> About<'_> {
        About {
            namespace: &self.namespace,
            name: &self.name,
            model: &self.model,
        }
    }
}

/// One channel's attempts for one ModelDeployment.
#[derive(Default)]
struct Attempts {
    in_flight: bool,
    failures: u32,
    /// No new attempt before this (after a failure).
    not_before: Option<Instant>,
}

/// What is kept in memory; all of it is keyed under `<namespace>/<name>/`.
/// Losing it (a restart) costs at most a repeated notification.
#[derive(Default)]
struct Memory {
    /// When each firing alert last went to Alertmanager.
    sent: HashMap<String, Instant>,
    /// Per `<namespace>/<name>/<channel>`.
    attempts: HashMap<String, Attempts>,
    /// Per `<namespace>/<name>/`: confirmed, not yet removed from status.
    confirmed: HashMap<String, BTreeSet<Confirmed>>,
}

impl Memory {
    /// The confirmations of `object` its cached status does not show yet.
    /// A confirmation is forgotten once the cache shows it written, not
    /// when this process wrote it: a pass working from a cache that lags
    /// behind that write still finds it, and neither sends the
    /// notification again nor keeps it in status.
    fn confirmed_unwritten(
        &mut self,
        object: &str,
        cached: &[AlertNotification],
    ) -> BTreeSet<Confirmed> {
        let Some(confirmed) = self.confirmed.get_mut(object) else {
            return BTreeSet::new();
        };
        confirmed.retain(|c| {
            cached
                .iter()
                .any(|n| n.key == c.key && n.pending.contains(&c.channel))
        });
        let still = confirmed.clone();
        if still.is_empty() {
            self.confirmed.remove(object);
        }
        still
    }

    /// Firing alerts Alertmanager may forget soon, to send again; those
    /// whose firing notification is on its way anyway (`started`) are not
    /// sent twice.
    fn refreshes(
        &mut self,
        target: &Target,
        firing: &[FiringAlert],
        outbox: &[AlertNotification],
        started: &[(AlertChannel, Vec<AlertNotification>)],
        now: Timestamp,
    ) -> Vec<Value> {
        let mut refresh = Vec::new();
        for alert in firing {
            let key = key(target, alert);
            let on_its_way = started.iter().any(|(c, batch)| {
                *c == AlertChannel::Alertmanager && batch.iter().any(|n| n.alert.same_alert(alert))
            });
            let due = self
                .sent
                .get(&key)
                .is_none_or(|at| at.elapsed() >= RESEND_AFTER);
            if on_its_way || due {
                self.sent.insert(key, Instant::now());
            }
            if due && !on_its_way {
                refresh.push(payload(
                    &target.about(),
                    alert,
                    AlertState::Firing,
                    now,
                    now,
                ));
            }
        }
        for n in outbox.iter().filter(|n| n.state == AlertState::Resolved) {
            self.sent.remove(&key(target, &n.alert));
        }
        refresh
    }
}

pub struct Deliverer {
    http: reqwest::Client,
    policy: Arc<Policy>,
    client: Client,
    metrics: Arc<Metrics>,
    memory: Mutex<Memory>,
    /// `(namespace, name)` of a ModelDeployment whose attempt ended: the
    /// controller reconciles it, so a confirmation is written at once.
    ended: broadcast::Sender<(String, String)>,
}

/// Attempts ended but not yet reconciled that a controller may lag behind
/// by; a lagging one misses some and finds them on the pass after
/// `ATTEMPT_LOOK_AGAIN`.
const ENDED_BACKLOG: usize = 1024;

impl Deliverer {
    /// Delivery state entries held (refresh times, attempts, confirmations).
    pub fn entries(&self) -> usize {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.sent.len() + memory.attempts.len() + memory.confirmed.len()
    }

    pub fn new(
        http: reqwest::Client,
        policy: Arc<Policy>,
        client: Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            policy,
            client,
            metrics,
            memory: Mutex::new(Memory::default()),
            ended: broadcast::channel(ENDED_BACKLOG).0,
        }
    }

    /// The ModelDeployments whose delivery attempt just ended.
    pub fn attempts_ended(&self) -> broadcast::Receiver<(String, String)> {
        self.ended.subscribe()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the delivery state of keys under `prefix`
    /// (`<namespace>/<name>/`): the ModelDeployment was deleted.
    pub fn forget(&self, prefix: &str) {
        let mut memory = self.memory();
        memory.sent.retain(|k, _| !k.starts_with(prefix));
        memory.attempts.retain(|k, _| !k.starts_with(prefix));
        memory.confirmed.retain(|k, _| !k.starts_with(prefix));
    }

    /// Deliveries of this ModelDeployment's notifications that a channel
    /// confirmed and status may not show yet.
    pub fn confirmed(&self, namespace: &str, name: &str) -> Vec<Confirmed> {
        self.memory()
            .confirmed
            .get(&format!("{namespace}/{name}/"))
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records a confirmation as a successful attempt would.
    #[cfg(test)]
    pub(crate) fn confirm(&self, namespace: &str, name: &str, confirmed: Confirmed) {
        self.memory()
            .confirmed
            .entry(format!("{namespace}/{name}/"))
            .or_default()
            .insert(confirmed);
    }

    /// Starts an attempt per channel for the notifications `outbox` (as
    /// written in status) still holds for it, unless one is under way or
    /// the channel's backoff is not over; and re-sends to Alertmanager
    /// firing alerts it may be about to forget. Returns when a pass should
    /// look again: to write what an attempt confirmed, or to retry.
    /// `cached`: the outbox of the status this pass observed.
    pub fn deliver(
        self: &Arc<Self>,
        target: &Target,
        firing: &[FiringAlert],
        outbox: &[AlertNotification],
        cached: &[AlertNotification],
    ) -> Option<Duration> {
        let now = Timestamp::now();
        let object = target.object();
        let mut memory = self.memory();
        let confirmed = memory.confirmed_unwritten(&object, cached);
        let mut look_again: Option<Duration> = None;
        let mut started = Vec::new();
        for channel in [AlertChannel::Alertmanager, AlertChannel::Webhook] {
            let configured = match channel {
                AlertChannel::Alertmanager => target.alertmanager.is_some(),
                _ => target.webhook.is_some(),
            };
            let batch: Vec<AlertNotification> = outbox::pending_for(outbox, channel)
                .into_iter()
                .filter(|n| {
                    !confirmed.contains(&Confirmed {
                        key: n.key.clone(),
                        channel,
                    })
                })
                .cloned()
                .collect();
            if !configured || batch.is_empty() {
                continue;
            }
            let attempts = memory
                .attempts
                .entry(format!("{object}{channel}"))
                .or_default();
            let wait = match (attempts.in_flight, attempts.not_before) {
                (true, _) => Some(ATTEMPT_LOOK_AGAIN),
                (false, Some(at)) if at > Instant::now() => Some(at - Instant::now()),
                _ => None,
            };
            let wait = wait.unwrap_or_else(|| {
                attempts.in_flight = true;
                started.push((channel, batch));
                ATTEMPT_LOOK_AGAIN
            });
            look_again = Some(look_again.map_or(wait, |l| l.min(wait)));
        }
        let refresh = match target.alertmanager {
            Some(_) => memory.refreshes(target, firing, outbox, &started, now),
            None => Vec::new(),
        };
        drop(memory);
        for (channel, batch) in started {
            self.attempt(target, channel, batch, now);
        }
        if let Some(url) = target.alertmanager.clone().filter(|_| !refresh.is_empty()) {
            let this = self.clone();
            tokio::spawn(async move {
                let result = this.to_alertmanager(&url, refresh).await;
                this.record("alertmanager", &url, result);
            });
        }
        look_again
    }

    /// One attempt to deliver `batch` over `channel`, in its own task.
    fn attempt(
        self: &Arc<Self>,
        target: &Target,
        channel: AlertChannel,
        batch: Vec<AlertNotification>,
        now: Timestamp,
    ) {
        let this = self.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let (destination, delivered, result) = match channel {
                AlertChannel::Alertmanager => {
                    let url = target.alertmanager.clone().unwrap_or_default();
                    let alerts = batch
                        .iter()
                        .map(|n| notification(&target.about(), n, now))
                        .collect();
                    let result = this.to_alertmanager(&url, alerts).await;
                    let delivered = if result.is_ok() { batch } else { Vec::new() };
                    (url, delivered, result)
                }
                _ => this.to_webhook(&target, batch, now).await,
            };
            let ok = result.is_ok();
            this.record(&channel.to_string().to_lowercase(), &destination, result);
            this.settle(&target, channel, &delivered, ok);
        });
    }

    /// Records an attempt's result: the confirmations of what was
    /// `delivered` (all of it, or what went before a failure), and the
    /// backoff unless the attempt was `ok`.
    fn settle(
        &self,
        target: &Target,
        channel: AlertChannel,
        delivered: &[AlertNotification],
        ok: bool,
    ) {
        let object = target.object();
        let mut memory = self.memory();
        let attempts = memory
            .attempts
            .entry(format!("{object}{channel}"))
            .or_default();
        attempts.in_flight = false;
        if ok {
            attempts.failures = 0;
            attempts.not_before = None;
        } else {
            attempts.failures = attempts.failures.saturating_add(1);
            attempts.not_before = Some(Instant::now() + retry_after(attempts.failures));
        }
        if !delivered.is_empty() {
            let confirmed = memory.confirmed.entry(object).or_default();
            confirmed.extend(delivered.iter().map(|n| Confirmed {
                key: n.key.clone(),
                channel,
            }));
        }
        drop(memory);
        // No receiver (a test without a controller) is no error worth a word.
        let _ = self
            .ended
            .send((target.namespace.clone(), target.name.clone()));
    }

    async fn to_alertmanager(&self, url: &str, alerts: Vec<Value>) -> Result<(), String> {
        match self.policy.request_url(Purpose::Alertmanager, url) {
            Ok(url) => self.post(url, &Value::Array(alerts)).await,
            Err(refused) => Err(refused.into()),
        }
        .map_err(|f| f.to_string())
    }

    /// Returns where it went (the Secret, never the URL), what was
    /// delivered, and the result.
    async fn to_webhook(
        &self,
        target: &Target,
        batch: Vec<AlertNotification>,
        now: Timestamp,
    ) -> (String, Vec<AlertNotification>, Result<(), String>) {
        let Some(secret) = target.webhook.as_ref() else {
            return (
                String::new(),
                Vec::new(),
                Err("no webhook configured".into()),
            );
        };
        let namespace = &target.namespace;
        // The URL is a secret: only its Secret is named.
        let named = format!(
            "the URL in Secret {namespace}/{} key {}",
            secret.name, secret.key
        );
        let url = match crate::outbound::secrets::read_key(
            &self.client,
            namespace,
            secret,
            crate::outbound::secrets::Purpose::AlertWebhook,
        )
        .await
        {
            Ok(url) => match self.policy.request_url(Purpose::Webhook, &url) {
                Ok(url) => url,
                Err(refused) => return (named, Vec::new(), Err(refused.to_string())),
            },
            Err(e) => return (named, Vec::new(), Err(e)),
        };
        if target.format == WebhookFormat::Alertmanager {
            let body = alertmanager_webhook(&target.about(), &batch, now);
            let result = self.post(url, &body).await.map_err(|f| f.to_string());
            let delivered = if result.is_ok() { batch } else { Vec::new() };
            return (named, delivered, result);
        }
        // One message per POST, in order; the first failure ends the
        // attempt, and what went before it is confirmed.
        let about = target.about();
        let mut delivered = Vec::new();
        for n in batch.into_iter().take(MESSAGES_PER_ATTEMPT) {
            let Some(message) = messages::generic(&about, &n) else {
                // Of a kind this binary cannot tell (a newer operator
                // decided it): never sent as something it is not, and not
                // waited for.
                delivered.push(n);
                continue;
            };
            let body = match target.format {
                WebhookFormat::Slack => messages::slack(&message),
                WebhookFormat::Teams => messages::teams(&message),
                _ => serde_json::to_value(&message).unwrap_or_default(),
            };
            if let Err(f) = self.post(url.clone(), &body).await {
                return (named, delivered, Err(f.to_string()));
            }
            delivered.push(n);
        }
        (named, delivered, Ok(()))
    }

    /// Posts `body` to a URL the policy allowed; only the answer's status
    /// is used, and at most `ALERT_BODY_LIMIT` bytes of it are read.
    async fn post(&self, url: reqwest::Url, body: &Value) -> Result<(), RequestFailure> {
        let request = self.http.post(url).json(body);
        let (status, _) = egress::send_capped(request, TIMEOUT, ALERT_BODY_LIMIT).await?;
        match status {
            200..=299 => Ok(()),
            other => Err(RequestFailure::Status(other)),
        }
    }

    fn record(&self, channel: &str, destination: &str, result: Result<(), String>) {
        let outcome = match &result {
            Ok(()) => "ok",
            Err(_) => "error",
        };
        self.metrics
            .alert_deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.into(),
                result: outcome.into(),
            })
            .inc();
        if let Err(e) = result {
            tracing::warn!(
                channel,
                destination,
                error = e.as_str(),
                "alert delivery failed"
            );
        }
    }
}

fn key(target: &Target, alert: &FiringAlert) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        target.namespace, target.name, alert.alertname, alert.revision, alert.metric
    )
}

/// After `failures` failed attempts in a row.
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_two_seconds_to_five_minutes() {
        let waits: Vec<u64> = [1, 2, 3, 8, 9, 50, u32::MAX]
            .into_iter()
            .map(|f| retry_after(f).as_secs())
            .collect();
        assert_eq!(waits, vec![2, 4, 8, 256, 300, 300, 300]);
    }
}
