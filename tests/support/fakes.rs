//! Stand-ins for HTTP services on 127.0.0.1: a webhook receiver and a
//! Prometheus query API that checks credentials.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A webhook receiver on 127.0.0.1 that keeps every JSON body posted to it.
pub struct WebhookSink {
    pub port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookSink {
    pub async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let shared = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 8192];
                    // Read headers, then as many body bytes as announced.
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&data).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if data.len() >= end + 4 + length {
                                let body = &data[end + 4..end + 4 + length];
                                if let Ok(v) = serde_json::from_slice::<Value>(body) {
                                    shared.lock().unwrap().push(v);
                                }
                                let _ = conn
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                    .await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { port, bodies, task }
    }

    pub async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        loop {
            let bodies = self.bodies.lock().unwrap().clone();
            if let Some(b) = bodies.iter().find(|b| ok(b)) {
                return b.clone();
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "the webhook never got {what}; it got {bodies:#?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = seen.clone();
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"scalar","result":[0,"{value}"]}}}}"#
    );
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (shared, body) = (shared.clone(), body.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let Ok(n) = conn.read(&mut buf).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let auth = request
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .trim()
                    .to_string();
                shared.lock().unwrap().push(auth);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen, task)
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
