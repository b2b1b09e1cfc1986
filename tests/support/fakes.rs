//! Stand-ins for HTTP services on 127.0.0.1, as small axum routers: a
//! webhook receiver, a Prometheus query API that records credentials, and
//! the exporter Prometheus scrapes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use super::eventually;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Serves `router` on a free port of 127.0.0.1 until the task is aborted.
pub async fn serve(router: Router) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a stand-in");
    let port = listener.local_addr().expect("stand-in address").port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (port, task)
}

/// A webhook receiver that keeps every JSON body it accepts. It can be
/// taken down (`set_up(false)`): it then answers 500 and keeps nothing, as
/// a receiver in trouble would, while counting the attempts.
pub struct WebhookSink {
    pub port: u16,
    state: Sink,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Default)]
struct Sink {
    bodies: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
}

impl WebhookSink {
    pub async fn start() -> Self {
        async fn receive(State(sink): State<Sink>, body: Bytes) -> StatusCode {
            sink.attempts.fetch_add(1, Ordering::SeqCst);
            if sink.down.load(Ordering::SeqCst) {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                sink.bodies.lock().unwrap().push(v);
            }
            StatusCode::OK
        }
        let state = Sink::default();
        let router = Router::new().fallback(receive).with_state(state.clone());
        let (port, task) = serve(router).await;
        Self { port, state, task }
    }

    /// Creates Secret `name` in `namespace`, labelled for alert webhooks,
    /// whose key `url` is this sink's URL with a token (`s3cr3t`) that must
    /// never be logged.
    pub async fn install_secret(&self, client: &kube::Client, namespace: &str, name: &str) {
        let url = format!("http://127.0.0.1:{}/hooks/models?token=s3cr3t\n", self.port);
        install_webhook_secret(client, namespace, name, &url).await;
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
    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("the webhook gets {what}"), TIMEOUT, || async {
            let bodies = self.bodies();
            match bodies.iter().find(|b| ok(b)) {
                Some(b) => Ok(b.clone()),
                None => Err(bodies),
            }
        })
        .await
    }

    /// Waits until a request was refused after `before` attempts.
    pub async fn wait_attempt(&self, before: usize) {
        eventually("the webhook is tried", TIMEOUT, || async {
            let now = self.attempts();
            if now > before { Ok(()) } else { Err(now) }
        })
        .await
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stand-in for Prometheus's query API that answers every query with one
/// number and remembers the Authorization headers it was sent. (The real
/// Prometheus here has no authentication to check a token against.)
pub async fn fake_prometheus(
    value: &str,
) -> (u16, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    type Seen = Arc<Mutex<Vec<String>>>;
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"scalar","result":[0,"{value}"]}}}}"#
    );
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let answer = move |State(seen): State<Seen>, headers: HeaderMap| async move {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        seen.lock().unwrap().push(auth);
        ([(header::CONTENT_TYPE, "application/json")], body)
    };
    let router = Router::new().fallback(answer).with_state(seen.clone());
    let (port, task) = serve(router).await;
    (port, seen, task)
}

/// Exposition text the test sets, for Prometheus to scrape.
pub struct Exporter {
    pub port: u16,
    body: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub async fn start(initial: &str) -> Self {
        async fn expose(
            State(body): State<Arc<Mutex<String>>>,
        ) -> impl axum::response::IntoResponse {
            let text = body.lock().map(|b| b.clone()).unwrap_or_default();
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
        }
        let body = Arc::new(Mutex::new(initial.to_string()));
        let router = Router::new().fallback(expose).with_state(body.clone());
        let (port, task) = serve(router).await;
        Self { port, body, task }
    }

    pub fn set(&self, text: &str) {
        if let Ok(mut b) = self.body.lock() {
            *b = text.to_string();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a misbehaving endpoint answers.
#[derive(Clone, Debug)]
pub enum Misbehaviour {
    /// 200 with an HTML page holding `SECRET_MARKER`.
    Html,
    /// 302 to the given URL.
    Redirect(String),
    /// 200, then an endless body (no Content-Length, up to `bytes`) of
    /// JSON-looking text holding `SECRET_MARKER`.
    Huge { bytes: usize },
    /// Accepts the connection, reads the request, never answers.
    Silent,
}

/// Text a misbehaving endpoint sends that must never show up anywhere.
pub const SECRET_MARKER: &str = "INTERNAL-ONLY-7f3a";

/// An HTTP endpoint on 127.0.0.1 that misbehaves, counting requests.
pub struct Misbehaving {
    pub port: u16,
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Misbehaving {
    pub async fn start(how: Misbehaviour) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let how = how.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    let _ = conn.read(&mut buf).await;
                    match how {
                        Misbehaviour::Html => {
                            let body = format!(
                                "<html><title>Admin</title><body>{SECRET_MARKER} internal page</body></html>"
                            );
                            let response = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = conn.write_all(response.as_bytes()).await;
                        }
                        Misbehaviour::Redirect(to) => {
                            let response = format!(
                                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                            let _ = conn.write_all(response.as_bytes()).await;
                        }
                        Misbehaviour::Huge { bytes } => {
                            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"";
                            if conn.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let chunk = format!("{SECRET_MARKER} ").repeat(4096);
                            let mut sent = 0;
                            while sent < bytes {
                                if conn.write_all(chunk.as_bytes()).await.is_err() {
                                    return;
                                }
                                sent += chunk.len();
                            }
                        }
                        Misbehaviour::Silent => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                });
            }
        });
        Self { port, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Misbehaving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates Secret `name` in `namespace`, labelled for alert webhooks (the
/// operator reads no other), with `url` under the key `url`.
pub async fn install_webhook_secret(client: &kube::Client, namespace: &str, name: &str, url: &str) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"mlops.dev/secret-type": "alert-webhook"}},
        "stringData": {"url": url},
    }))
    .expect("Secret");
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .expect("create the webhook Secret");
}
