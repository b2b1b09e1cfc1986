//! Requests to the endpoints ModelDeployments name (Prometheus, Alertmanager,
//! webhooks). Whoever writes a ModelDeployment chooses the URL, but the
//! request leaves from the operator's network position: so the cluster
//! admin decides which endpoints may be used (`Policy`), no redirect is
//! followed, time and response size are bounded, and nothing an endpoint
//! says ever reaches status, Events, alerts or logs: only a `RequestFailure`,
//! whose text is the operator's own (docs/security.md).

use std::time::Duration;

use reqwest::Url;
use thiserror::Error;

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
    #[error("the address is not among the endpoints the operator may use (--allowed-endpoint)")]
    NotAllowed,
    #[error("the address is not a plain http(s) URL without credentials, query or fragment")]
    BadAddress,
    #[error("a bearer token is never sent over plain http (--allow-insecure-tokens)")]
    TokenOverPlainHttp,
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

/// Which endpoints ModelDeployments may name, set by the cluster admin.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// URL prefixes; empty allows any address (unsafe in a shared cluster).
    allowed: Vec<Url>,
    /// Send bearer tokens over plain http too.
    insecure_tokens: bool,
}

impl Policy {
    /// `allowed`: URL prefixes such as `http://prometheus.monitoring:9090/`.
    pub fn new(allowed: &[String], insecure_tokens: bool) -> Result<Self, String> {
        let allowed = allowed
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                plain_url(p.trim()).ok_or_else(|| {
                    format!("--allowed-endpoint {p:?}: {}", RequestFailure::BadAddress)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allowed,
            insecure_tokens,
        })
    }

    /// Any address allowed: today's behaviour, unsafe in a shared cluster.
    pub fn allows_any(&self) -> bool {
        self.allowed.is_empty()
    }

    /// The address, when the policy allows requests to it.
    pub fn check(&self, address: &str) -> Result<Url, RequestFailure> {
        let url = plain_url(address).ok_or(RequestFailure::BadAddress)?;
        if self.allowed.is_empty() || self.allowed.iter().any(|p| within(&url, p)) {
            Ok(url)
        } else {
            Err(RequestFailure::NotAllowed)
        }
    }

    /// A webhook URL, read from a Secret: it may carry a token in its query
    /// or credentials (common for webhook receivers, and it is a Secret the
    /// team opted in), but it is held to the same allow-list.
    pub fn check_secret_url(&self, address: &str) -> Result<Url, RequestFailure> {
        let url = Url::parse(address).map_err(|_| RequestFailure::BadAddress)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(RequestFailure::BadAddress);
        }
        if self.allowed.is_empty() || self.allowed.iter().any(|p| within(&url, p)) {
            Ok(url)
        } else {
            Err(RequestFailure::NotAllowed)
        }
    }

    /// Whether a bearer token may go to `url`.
    pub fn token_allowed(&self, url: &Url) -> Result<(), RequestFailure> {
        match url.scheme() {
            "https" => Ok(()),
            _ if self.insecure_tokens => Ok(()),
            _ => Err(RequestFailure::TokenOverPlainHttp),
        }
    }
}

/// An http(s) URL with a host and without credentials, query or fragment
/// (the schema refuses those too; this holds for objects stored before).
fn plain_url(text: &str) -> Option<Url> {
    let url = Url::parse(text).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    plain.then_some(url)
}

/// Same scheme, host and port, and the path continues the prefix's at a
/// segment boundary: `http://prom:9090/a` covers `/a` and `/a/b`, not
/// `/ab`; `http://prom` never covers `http://prom.evil`.
fn within(url: &Url, prefix: &Url) -> bool {
    if url.scheme() != prefix.scheme()
        || url.host_str() != prefix.host_str()
        || url.port_or_known_default() != prefix.port_or_known_default()
    {
        return false;
    }
    let base = prefix.path().trim_end_matches('/');
    let path = url.path();
    match path.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
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
    fn prefixes_match_whole_hosts_ports_and_path_segments() {
        let policy = Policy::new(
            &[
                "http://prometheus.monitoring:9090".into(),
                "https://alerts.example/team-a/".into(),
            ],
            false,
        )
        .unwrap();
        let cases = [
            ("http://prometheus.monitoring:9090", true),
            ("http://prometheus.monitoring:9090/", true),
            ("http://prometheus.monitoring:9090/prom", true),
            ("http://PROMETHEUS.monitoring:9090", true),
            ("http://prometheus.monitoring:9091", false),
            ("http://prometheus.monitoring.evil:9090", false),
            ("https://prometheus.monitoring:9090", false),
            ("https://alerts.example/team-a", true),
            ("https://alerts.example/team-a/x", true),
            ("https://alerts.example/team-ab", false),
            ("https://alerts.example/", false),
            ("http://10.0.0.1:9090", false),
        ];
        for (address, ok) in cases {
            assert_eq!(policy.check(address).is_ok(), ok, "{address}");
        }
    }

    #[test]
    fn an_empty_list_allows_any_plain_address() {
        let policy = Policy::new(&[], false).unwrap();
        assert!(policy.allows_any());
        assert!(policy.check("http://anything:1234/x").is_ok());
    }

    #[test]
    fn credentials_query_fragment_and_other_schemes_are_refused_always() {
        let policy = Policy::default();
        for address in [
            "http://user:pw@prom:9090",
            "http://user@prom:9090",
            "http://prom:9090/?x=1",
            "http://prom:9090/#",
            "http://prom:9090#frag",
            "file:///etc/passwd",
            "ftp://prom",
            "prom:9090",
            "",
        ] {
            assert_eq!(
                policy.check(address),
                Err(RequestFailure::BadAddress),
                "{address}"
            );
        }
        assert!(Policy::new(&["http://u:p@x".into()], false).is_err());
    }

    #[test]
    fn webhook_urls_from_secrets_may_carry_a_query_but_not_leave_the_list() {
        let policy = Policy::new(&["https://hooks.example/team-a".into()], false).unwrap();
        assert!(
            policy
                .check_secret_url("https://hooks.example/team-a/x?token=s")
                .is_ok()
        );
        assert_eq!(
            policy.check_secret_url("https://hooks.example/team-b?token=s"),
            Err(RequestFailure::NotAllowed)
        );
        assert_eq!(
            policy.check_secret_url("file:///etc/passwd"),
            Err(RequestFailure::BadAddress)
        );
    }

    #[test]
    fn tokens_go_over_https_only_unless_allowed() {
        let http = Url::parse("http://prom:9090").unwrap();
        let https = Url::parse("https://prom:9090").unwrap();
        let strict = Policy::default();
        assert_eq!(
            strict.token_allowed(&http),
            Err(RequestFailure::TokenOverPlainHttp)
        );
        assert_eq!(strict.token_allowed(&https), Ok(()));
        let lax = Policy::new(&[], true).unwrap();
        assert_eq!(lax.token_allowed(&http), Ok(()));
    }

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
