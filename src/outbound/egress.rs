//! Requests to the endpoints ModelDeployments name (Prometheus, Alertmanager,
//! webhooks). Whoever writes a ModelDeployment chooses the URL, but the
//! request leaves from the operator's network position: so the cluster
//! admin decides which endpoints may be used for what
//! (`crate::outbound::policy`), no redirect is
//! followed, time and response size are bounded, and nothing an endpoint
//! says ever reaches status, Events, alerts or logs: only a `RequestFailure`,
//! whose text is the operator's own (docs/security.md).

use std::time::Duration;

use thiserror::Error;

use crate::outbound::policy::Refused;

/// The most of a Prometheus answer read. One number, or one series per
/// histogram bucket (at most `MAX_BUCKETS`), is a few KiB; 1 MiB leaves
/// room for verbose labels and stays small beside the pod's 256Mi limit
/// even with every pool slot reading at once.
pub const PROMETHEUS_BODY_LIMIT: usize = 1024 * 1024;
/// The most of an Alertmanager or webhook answer read: only its status is
/// used, the body is drained so the connection can be reused.
pub const ALERT_BODY_LIMIT: usize = 64 * 1024;
/// Time to establish a connection, whatever the request's own timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong, in the operator's words only.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum RequestFailure {
    /// Not sent: the admin's policy (`crate::outbound::policy`).
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("HTTP {0} (redirects are not followed)")]
    Redirect(u16),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("not a Prometheus API response")]
    NotPrometheus,
    #[error("response over {0} bytes")]
    TooLarge(usize),
    #[error("no answer within {0}s")]
    Timeout(u64),
    #[error("connection refused")]
    ConnectionRefused,
    #[error("cannot connect")]
    CannotConnect,
    #[error("the connection failed")]
    Broken,
}

/// The HTTP client for every outbound request: no redirects (a redirect
/// could lead anywhere the allow-list does not), a bounded connect time,
/// no proxy from the environment's surprises beyond the standard variables.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default crypto provider; use ring, like
    // the kube client. Installing twice is harmless (the first wins).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("model-operator/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// Sends `request` (which carries its own timeout) and reads at most
/// `limit` bytes of the answer, chunk by chunk: a larger answer is
/// abandoned as soon as it passes the limit, never held whole.
pub async fn send_capped(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    limit: usize,
) -> Result<(u16, Vec<u8>), RequestFailure> {
    let mut response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| classify(&e, timeout))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(RequestFailure::Redirect(status.as_u16()));
    }
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(RequestFailure::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, timeout))? {
        if body.len() + chunk.len() > limit {
            return Err(RequestFailure::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status.as_u16(), body))
}

/// Sorts a transport error into a `RequestFailure`, dropping its text (reqwest's
/// errors carry the URL, which may be a webhook's secret).
pub fn classify(e: &reqwest::Error, timeout: Duration) -> RequestFailure {
    if e.is_timeout() {
        return RequestFailure::Timeout(timeout.as_secs());
    }
    let mut cause: &(dyn std::error::Error + 'static) = e;
    loop {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return RequestFailure::ConnectionRefused;
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return RequestFailure::Timeout(timeout.as_secs());
            }
        }
        match cause.source() {
            Some(next) => cause = next,
            None => break,
        }
    }
    if e.is_connect() {
        RequestFailure::CannotConnect
    } else {
        RequestFailure::Broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_documented() {
        assert_eq!(
            RequestFailure::TooLarge(PROMETHEUS_BODY_LIMIT).to_string(),
            "response over 1048576 bytes"
        );
        assert_eq!(RequestFailure::Status(502).to_string(), "HTTP 502");
        assert_eq!(
            RequestFailure::NotPrometheus.to_string(),
            "not a Prometheus API response"
        );
        assert_eq!(
            RequestFailure::ConnectionRefused.to_string(),
            "connection refused"
        );
        assert_eq!(
            RequestFailure::Timeout(5).to_string(),
            "no answer within 5s"
        );
    }
}
