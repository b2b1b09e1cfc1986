//! Where outbound requests may go, by purpose. The cluster admin lists URL
//! prefixes for each purpose separately (Prometheus queries, Alertmanager
//! alerts, webhooks): a prefix allowed for one is not allowed for another,
//! so allowing the shared Prometheus for queries never lets a webhook URL
//! (any path, POST) reach its `/-/quit` or admin API. For Prometheus and
//! Alertmanager the operator appends the one path it uses and checks the
//! final URL, not the address a ModelDeployment names. An empty list allows
//! nothing; `allow_any` (single-team clusters) allows any address, still
//! only on those paths (docs/security.md).

use reqwest::Url;
use thiserror::Error;

/// What an outbound request is for; each purpose has its own list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Instant queries, `POST <address>/api/v1/query` (Prometheus's
    /// documented form-encoded POST of the query endpoint).
    Prometheus,
    /// `POST <url>/api/v2/alerts`.
    Alertmanager,
    /// `POST` to the URL in a Secret, as it is.
    Webhook,
}

impl Purpose {
    /// The command-line flag that lists this purpose's prefixes.
    pub fn flag(self) -> &'static str {
        match self {
            Purpose::Prometheus => "--allowed-prometheus",
            Purpose::Alertmanager => "--allowed-alertmanager",
            Purpose::Webhook => "--allowed-webhook",
        }
    }

    /// The chart's value that sets `flag`.
    pub fn helm_value(self) -> &'static str {
        match self {
            Purpose::Prometheus => "outbound.allowedPrometheus",
            Purpose::Alertmanager => "outbound.allowedAlertmanager",
            Purpose::Webhook => "outbound.allowedWebhooks",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Purpose::Prometheus => "Prometheus queries",
            Purpose::Alertmanager => "Alertmanager alerts",
            Purpose::Webhook => "alert webhooks",
        }
    }

    /// The only path the operator requests below an address of this
    /// purpose; a webhook's URL is used as it is.
    pub fn path(self) -> Option<&'static str> {
        match self {
            Purpose::Prometheus => Some("/api/v1/query"),
            Purpose::Alertmanager => Some("/api/v2/alerts"),
            Purpose::Webhook => None,
        }
    }
}

/// Why a request was not sent, in the operator's words (they reach status).
#[derive(Clone, Debug, Error, PartialEq)]
pub enum Refused {
    #[error(
        "the address is not among the endpoints the operator may send {what} to ({flag}, Helm value {helm})",
        what = .0.what(), flag = .0.flag(), helm = .0.helm_value()
    )]
    NotAllowed(Purpose),
    #[error(
        "the operator may send no {what}: the admin allowed no endpoint for them (set {flag}, Helm value {helm}, or in a single-team cluster --allow-any-endpoint, outbound.allowAny)",
        what = .0.what(), flag = .0.flag(), helm = .0.helm_value()
    )]
    NoneAllowed(Purpose),
    #[error("the address is not a plain http(s) URL without credentials, query or fragment")]
    BadAddress,
    #[error("a bearer token is never sent over plain http (--allow-insecure-tokens)")]
    TokenOverPlainHttp,
}

/// The admin's flags, as given (`model-operator run --help`).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub prometheus: Vec<String>,
    pub alertmanager: Vec<String>,
    pub webhook: Vec<String>,
    /// The deprecated `--allowed-endpoint`: prefixes for Prometheus and
    /// Alertmanager (whose paths the operator fixes), never for webhooks.
    pub legacy: Vec<String>,
    /// Any address for every purpose (single-team clusters).
    pub allow_any: bool,
    /// Send bearer tokens over plain http too.
    pub insecure_tokens: bool,
    /// Every query sees only its ModelDeployment's namespace
    /// (`crate::analysis::scope`).
    pub scope_queries: bool,
}

/// One purpose's list.
#[derive(Clone, Debug)]
enum Allowed {
    Any,
    /// Empty: nothing.
    Prefixes(Vec<Url>),
}

impl Allowed {
    fn check(&self, purpose: Purpose, url: &Url) -> Result<(), Refused> {
        match self {
            Allowed::Any => Ok(()),
            Allowed::Prefixes(p) if p.is_empty() => Err(Refused::NoneAllowed(purpose)),
            Allowed::Prefixes(p) if p.iter().any(|p| within(url, p)) => Ok(()),
            Allowed::Prefixes(_) => Err(Refused::NotAllowed(purpose)),
        }
    }
}

/// Which endpoints ModelDeployments may name, per purpose, set by the
/// cluster admin.
#[derive(Clone, Debug)]
pub struct Policy {
    prometheus: Allowed,
    alertmanager: Allowed,
    webhook: Allowed,
    insecure_tokens: bool,
    scope_queries: bool,
}

impl Policy {
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let parse = |flag: &str, prefixes: &[String]| -> Result<Vec<Url>, String> {
            prefixes
                .iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    plain_url(p.trim())
                        .ok_or_else(|| format!("{flag} {p:?}: {}", Refused::BadAddress))
                })
                .collect()
        };
        let legacy = parse("--allowed-endpoint", &settings.legacy)?;
        let list = |purpose: Purpose, prefixes: &[String], legacy: &[Url]| {
            let mut urls = parse(purpose.flag(), prefixes)?;
            urls.extend_from_slice(legacy);
            Ok::<_, String>(match settings.allow_any {
                true => Allowed::Any,
                false => Allowed::Prefixes(urls),
            })
        };
        Ok(Self {
            prometheus: list(Purpose::Prometheus, &settings.prometheus, &legacy)?,
            alertmanager: list(Purpose::Alertmanager, &settings.alertmanager, &legacy)?,
            webhook: list(Purpose::Webhook, &settings.webhook, &[])?,
            insecure_tokens: settings.insecure_tokens,
            scope_queries: settings.scope_queries,
        })
    }

    /// Whether every query is scoped to its ModelDeployment's namespace.
    pub fn scopes_queries(&self) -> bool {
        self.scope_queries
    }

    /// Any address for every purpose: unit tests of other modules.
    #[cfg(test)]
    pub fn any() -> Self {
        Self::new(&Settings {
            allow_any: true,
            ..Settings::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The URL the operator requests for `address` (a Prometheus address or
    /// an Alertmanager URL from a spec: the purpose's path appended; a
    /// webhook URL from a Secret: as it is), when the purpose's list allows
    /// that final URL.
    pub fn request_url(&self, purpose: Purpose, address: &str) -> Result<Url, Refused> {
        let (url, allowed) = match purpose.path() {
            Some(path) => {
                let base = plain_url(address).ok_or(Refused::BadAddress)?;
                let list = match purpose {
                    Purpose::Prometheus => &self.prometheus,
                    _ => &self.alertmanager,
                };
                (join(&base, path)?, list)
            }
            None => (secret_url(address)?, &self.webhook),
        };
        allowed.check(purpose, &url)?;
        Ok(url)
    }

    /// Whether a bearer token may go to `url`.
    pub fn token_allowed(&self, url: &Url) -> Result<(), Refused> {
        match url.scheme() {
            "https" => Ok(()),
            _ if self.insecure_tokens => Ok(()),
            _ => Err(Refused::TokenOverPlainHttp),
        }
    }
}

/// What to warn about at start: settings that are unsafe in a shared
/// cluster, or deprecated.
pub fn warnings(settings: &Settings) -> Vec<String> {
    let mut warnings = Vec::new();
    if settings.allow_any {
        warnings.push("--allow-any-endpoint: ModelDeployments may make the operator send Prometheus queries and alerts to any address (unsafe in a shared cluster; see docs/security.md)".to_string());
    }
    if settings.legacy.iter().any(|p| !p.trim().is_empty()) {
        warnings.push("--allowed-endpoint (ALLOWED_ENDPOINTS, outbound.allowedEndpoints) is deprecated: it allows its prefixes for Prometheus queries and Alertmanager alerts, never for webhooks; use --allowed-prometheus, --allowed-alertmanager and --allowed-webhook".to_string());
    }
    warnings
}

/// `path` appended to `base`'s path. The result is parsed again, so dot
/// segments are resolved as the server would see them, and it must still
/// end with `path`: the purpose's one endpoint.
fn join(base: &Url, path: &str) -> Result<Url, Refused> {
    let text = format!("{}{path}", base.as_str().trim_end_matches('/'));
    let url = plain_url(&text).ok_or(Refused::BadAddress)?;
    if url.path().ends_with(path) {
        Ok(url)
    } else {
        Err(Refused::BadAddress)
    }
}

/// A webhook URL, read from a Secret: it may carry a token in its query or
/// credentials (common for webhook receivers, and it is a Secret the team
/// opted in), but must be http(s) with a host.
fn secret_url(address: &str) -> Result<Url, Refused> {
    let url = Url::parse(address).map_err(|_| Refused::BadAddress)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Refused::BadAddress);
    }
    Ok(url)
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
    match url.path().strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests;
