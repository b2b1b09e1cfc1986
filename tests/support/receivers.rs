//! Chat receivers on 127.0.0.1 as strict as the real ones about shape: a
//! Slack incoming webhook and a Microsoft Teams workflow. Each answers 400
//! to a body Slack or Teams would refuse, keeps every body it accepts, and
//! can be taken down (500) to hold notifications in the operator's outbox.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::eventually;
use super::fakes::serve;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Which service a receiver stands in for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Chat {
    Slack,
    Teams,
}

impl Chat {
    /// Why Slack or Teams would refuse `body`, if they would.
    pub fn refuses(self, body: &Value) -> Option<String> {
        match self {
            Chat::Slack => slack_refuses(body),
            Chat::Teams => teams_refuses(body),
        }
    }

    /// The idempotency key a body shows (in a field or fact `Key`).
    pub fn key(self, body: &Value) -> Option<String> {
        match self {
            Chat::Slack => body["blocks"]
                .as_array()?
                .iter()
                .filter_map(|b| b["fields"].as_array())
                .flatten()
                .filter_map(|f| f["text"].as_str()?.strip_prefix("Key: "))
                .map(str::to_string)
                .next(),
            Chat::Teams => body["attachments"][0]["content"]["body"]
                .as_array()?
                .iter()
                .filter_map(|b| b["facts"].as_array())
                .flatten()
                .find(|f| f["title"] == "Key")
                .and_then(|f| f["value"].as_str())
                .map(str::to_string),
        }
    }

    /// The title line of a body.
    pub fn title(self, body: &Value) -> String {
        let title = match self {
            Chat::Slack => &body["blocks"][0]["text"]["text"],
            Chat::Teams => &body["attachments"][0]["content"]["body"][0]["text"],
        };
        title.as_str().unwrap_or_default().to_string()
    }
}

/// Slack's incoming webhooks need a non-empty string `text` (or blocks),
/// and `blocks`, when present, an array of objects each with a `type`.
fn slack_refuses(body: &Value) -> Option<String> {
    if body["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        return Some("no_text".into());
    }
    match body.get("blocks") {
        None => None,
        Some(Value::Array(blocks)) => blocks
            .iter()
            .all(|b| b["type"].is_string())
            .then_some(())
            .map_or_else(|| Some("invalid_blocks".into()), |()| None),
        Some(_) => Some("invalid_blocks".into()),
    }
}

/// A Teams workflow takes a message whose attachments hold an Adaptive
/// Card with a non-empty body.
fn teams_refuses(body: &Value) -> Option<String> {
    if body["type"] != "message" {
        return Some("not a message".into());
    }
    let Some([attachment]) = body["attachments"].as_array().map(Vec::as_slice) else {
        return Some("not exactly one attachment".into());
    };
    if attachment["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Some("not an Adaptive Card".into());
    }
    let card = &attachment["content"];
    if card["type"] != "AdaptiveCard" || !card["version"].is_string() {
        return Some("no AdaptiveCard type or version".into());
    }
    match card["body"].as_array() {
        Some(elements)
            if !elements.is_empty() && elements.iter().all(|e| e["type"].is_string()) =>
        {
            None
        }
        _ => Some("an empty or malformed card body".into()),
    }
}

pub struct ChatReceiver {
    pub chat: Chat,
    pub port: u16,
    state: Received,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Received {
    chat: Chat,
    accepted: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<Vec<String>>>,
    down: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
}

impl ChatReceiver {
    pub async fn start(chat: Chat) -> Self {
        async fn receive(State(r): State<Received>, body: Bytes) -> StatusCode {
            r.attempts.fetch_add(1, Ordering::SeqCst);
            if r.down.load(Ordering::SeqCst) {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            let why = match serde_json::from_slice::<Value>(&body) {
                Ok(v) => match r.chat.refuses(&v) {
                    None => {
                        r.accepted.lock().unwrap().push(v);
                        return StatusCode::OK;
                    }
                    Some(why) => why,
                },
                Err(e) => format!("not JSON: {e}"),
            };
            r.refused.lock().unwrap().push(why);
            StatusCode::BAD_REQUEST
        }
        let state = Received {
            chat,
            accepted: Arc::default(),
            refused: Arc::default(),
            down: Arc::default(),
            attempts: Arc::default(),
        };
        let router = Router::new().fallback(receive).with_state(state.clone());
        let (port, task) = serve(router).await;
        Self {
            chat,
            port,
            state,
            task,
        }
    }

    /// Creates Secret `name` in `namespace`, labelled for alert webhooks,
    /// holding this receiver's URL (with a token that must never be logged).
    pub async fn install_secret(&self, client: &kube::Client, namespace: &str, name: &str) {
        let url = format!("http://127.0.0.1:{}/services/T0/B0/s3cr3t", self.port);
        super::fakes::install_webhook_secret(client, namespace, name, &url).await;
    }

    /// `false`: answer 500 and keep nothing from now on.
    pub fn set_up(&self, up: bool) {
        self.state.down.store(!up, Ordering::SeqCst);
    }

    /// Requests received, accepted or not.
    pub fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }

    /// The bodies accepted so far.
    pub fn accepted(&self) -> Vec<Value> {
        self.state.accepted.lock().unwrap().clone()
    }

    /// Why each body refused as malformed was refused.
    pub fn refused(&self) -> Vec<String> {
        self.state.refused.lock().unwrap().clone()
    }

    /// How many accepted bodies carry `key`.
    pub fn deliveries(&self, key: &str) -> usize {
        self.accepted()
            .iter()
            .filter(|b| self.chat.key(b).as_deref() == Some(key))
            .count()
    }

    /// Waits until a body with `key` was accepted.
    pub async fn wait_key(&self, key: &str) {
        eventually(
            &format!("{:?} receives notification {key}", self.chat),
            TIMEOUT,
            || async {
                if self.deliveries(key) > 0 {
                    Ok(())
                } else {
                    Err((
                        self.accepted()
                            .iter()
                            .map(|b| self.chat.title(b))
                            .collect::<Vec<_>>(),
                        self.refused(),
                    ))
                }
            },
        )
        .await;
    }

    /// Waits until a request was refused after `before` attempts.
    pub async fn wait_attempt(&self, before: usize) {
        eventually(&format!("{:?} is tried", self.chat), TIMEOUT, || async {
            let now = self.attempts();
            if now > before { Ok(()) } else { Err(now) }
        })
        .await;
    }
}

impl Drop for ChatReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
