//! Who may read `/metrics`, decided the Kubernetes way, as
//! controller-runtime's secure metrics and kube-rbac-proxy do: the reader's
//! bearer token is authenticated by the API server (TokenReview), and the
//! user it names must be allowed `get` on the non-resource URL `/metrics`
//! (SubjectAccessReview), which the chart's ClusterRole
//! `<release>-metrics-reader` grants.
//!
//! Verdicts are cached per token (by its SHA-256, never the token itself),
//! so a Prometheus scraping every 15 s costs one review per cache period,
//! not one per scrape. The cache is bounded, a refusal is kept only
//! briefly (a binding just created must not wait long), and an API error is
//! never kept: the next scrape asks again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// The URL and verb a reader must be allowed, as in the chart's
/// metrics-reader ClusterRole.
const PATH: &str = "/metrics";
const VERB: &str = "get";

/// How long an allowed reader is trusted without asking again: a binding
/// removed takes effect within this time.
const ALLOWED_FOR: Duration = Duration::from_secs(120);
/// How long a refusal is kept: short, so a binding just created works on
/// the next scrapes, yet a reader retrying in a loop costs little.
const REFUSED_FOR: Duration = Duration::from_secs(10);
/// Tokens remembered at once. Prometheus replicas, a person with kubectl:
/// a handful; 256 leaves room and bounds what a flood of made-up tokens
/// can make the operator hold.
const CAPACITY: usize = 256;
/// Reviews in flight at once: a flood of made-up tokens queues here
/// instead of becoming a flood of requests to the API server.
const IN_FLIGHT: usize = 4;

/// What a reader may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No token, or one the API server does not accept: 401.
    Unauthenticated,
    /// A known user without `get` on `/metrics`: 403.
    Forbidden,
}

impl Verdict {
    fn kept_for(self) -> Duration {
        match self {
            Verdict::Allowed => ALLOWED_FOR,
            Verdict::Unauthenticated | Verdict::Forbidden => REFUSED_FOR,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    #[error("SubjectAccessReview failed: {0}")]
    AccessReview(#[source] kube::Error),
}

type TokenDigest = [u8; 32];

/// Verdicts by token digest, each until its expiry; pure (time is passed
/// in), so its rules have table tests.
#[derive(Debug)]
pub struct Cache {
    entries: HashMap<TokenDigest, (Verdict, Instant)>,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// The verdict, while it has not expired.
    pub fn get(&mut self, key: &TokenDigest, now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((verdict, until)) if *until > now => Some(*verdict),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps a verdict for as long as its kind may be kept. When full, the
    /// expired entries go first, then the one closest to expiry.
    pub fn put(&mut self, key: TokenDigest, verdict: Verdict, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| *k);
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        if self.capacity > 0 {
            self.entries
                .insert(key, (verdict, now + verdict.kept_for()));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Asks the API server about readers' tokens, with the cache in front.
pub struct Reviewer {
    client: Client,
    cache: Mutex<Cache>,
    in_flight: Semaphore,
}

impl Reviewer {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(Cache::new(CAPACITY)),
            in_flight: Semaphore::new(IN_FLIGHT),
        }
    }

    fn cached(&self, key: &TokenDigest) -> Option<Verdict> {
        // A poisoned lock only means a holder panicked; the map is valid.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key, Instant::now())
    }

    /// The verdict for a bearer token.
    pub async fn review(&self, token: &str) -> Result<Verdict, ReviewError> {
        let key: TokenDigest = Sha256::digest(token.as_bytes()).into();
        if let Some(verdict) = self.cached(&key) {
            return Ok(verdict);
        }
        // A closed semaphore cannot happen (never closed); go on unbounded
        // rather than refuse a reader if it ever did.
        let _permit = self.in_flight.acquire().await.ok();
        // Another scrape with the same token may have asked meanwhile.
        if let Some(verdict) = self.cached(&key) {
            return Ok(verdict);
        }
        let verdict = self.ask(token).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.put(key, verdict, Instant::now());
        Ok(verdict)
    }

    async fn ask(&self, token: &str) -> Result<Verdict, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        let Some(user) = authenticated_user(&reviewed) else {
            return Ok(Verdict::Unauthenticated);
        };
        let access = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access_review(user))
            .await
            .map_err(ReviewError::AccessReview)?;
        Ok(if access.status.is_some_and(|s| s.allowed) {
            Verdict::Allowed
        } else {
            Verdict::Forbidden
        })
    }
}

/// The user a TokenReview authenticated, if it did.
fn authenticated_user(review: &TokenReview) -> Option<&UserInfo> {
    let status = review.status.as_ref()?;
    if status.authenticated != Some(true) {
        return None;
    }
    status.user.as_ref().filter(|u| u.username.is_some())
}

/// May this user `get` `/metrics`? Groups and extra go along: a binding to
/// a group (e.g. `system:serviceaccounts:monitoring`) counts too.
fn access_review(user: &UserInfo) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(PATH.into()),
                verb: Some(VERB.into()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 9110); `None` for any other or an empty one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The middleware in front of `/metrics`.
pub async fn authorize(
    State(reviewer): State<Arc<Reviewer>>,
    request: Request,
    next: Next,
) -> Response {
    let verdict = match bearer_token(request.headers()) {
        None => Ok(Verdict::Unauthenticated),
        Some(token) => reviewer.review(token).await,
    };
    match verdict {
        Ok(Verdict::Allowed) => next.run(request).await,
        Ok(Verdict::Unauthenticated) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "Unauthorized: a bearer token the Kubernetes API server accepts is needed\n",
        )
            .into_response(),
        Ok(Verdict::Forbidden) => (
            StatusCode::FORBIDDEN,
            "Forbidden: the token's user may not get the non-resource URL /metrics\n",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot review a /metrics reader");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the Kubernetes API server could not review the token\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use k8s_openapi::api::authentication::v1::TokenReviewStatus;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        for (header, want) in [
            (Some("Bearer abc"), Some("abc")),
            (Some("bearer abc"), Some("abc")),
            (Some("BEARER  abc "), Some("abc")),
            (Some("Bearer "), None),
            (Some("Basic dXNlcjpwYXNz"), None),
            (Some("abc"), None),
            (None, None),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(h) = header {
                headers.insert(header::AUTHORIZATION, HeaderValue::from_static(h));
            }
            assert_eq!(bearer_token(&headers), want, "{header:?}");
        }
    }

    fn review(authenticated: Option<bool>, username: Option<&str>) -> TokenReview {
        TokenReview {
            status: Some(TokenReviewStatus {
                authenticated,
                user: Some(UserInfo {
                    username: username.map(str::to_string),
                    groups: Some(vec!["system:serviceaccounts".into()]),
                    ..UserInfo::default()
                }),
                ..TokenReviewStatus::default()
            }),
            ..TokenReview::default()
        }
    }

    #[test]
    fn only_an_authenticated_named_user_is_reviewed_for_access() {
        let sa = "system:serviceaccount:monitoring:prometheus";
        for (authenticated, username, want) in [
            (Some(true), Some(sa), Some(sa)),
            (Some(false), Some(sa), None),
            (None, Some(sa), None),
            (Some(true), None, None),
        ] {
            let reviewed = review(authenticated, username);
            let user = authenticated_user(&reviewed);
            assert_eq!(
                user.and_then(|u| u.username.as_deref()),
                want,
                "{authenticated:?} {username:?}"
            );
        }
        assert_eq!(authenticated_user(&TokenReview::default()), None);
    }

    #[test]
    fn the_access_review_asks_get_on_metrics_for_the_user_and_groups() {
        let reviewed = review(Some(true), Some("u"));
        let user = authenticated_user(&reviewed).unwrap();
        let spec = access_review(user).spec;
        assert_eq!(spec.user.as_deref(), Some("u"));
        assert_eq!(spec.groups, Some(vec!["system:serviceaccounts".into()]));
        let url = spec.non_resource_attributes.unwrap();
        assert_eq!(url.path.as_deref(), Some("/metrics"));
        assert_eq!(url.verb.as_deref(), Some("get"));
        assert!(spec.resource_attributes.is_none());
    }

    fn key(n: u8) -> TokenDigest {
        [n; 32]
    }

    #[test]
    fn verdicts_are_kept_for_their_kind_of_period() {
        let start = Instant::now();
        let mut cache = Cache::new(8);
        cache.put(key(1), Verdict::Allowed, start);
        cache.put(key(2), Verdict::Forbidden, start);
        cache.put(key(3), Verdict::Unauthenticated, start);
        for (at, k, want) in [
            (Duration::ZERO, 1, Some(Verdict::Allowed)),
            (Duration::ZERO, 2, Some(Verdict::Forbidden)),
            (
                REFUSED_FOR - Duration::from_millis(1),
                3,
                Some(Verdict::Unauthenticated),
            ),
            (REFUSED_FOR, 2, None),
            (REFUSED_FOR, 3, None),
            (
                ALLOWED_FOR - Duration::from_millis(1),
                1,
                Some(Verdict::Allowed),
            ),
            (ALLOWED_FOR, 1, None),
            (Duration::ZERO, 4, None),
        ] {
            assert_eq!(cache.get(&key(k), start + at), want, "token {k} at {at:?}");
        }
        assert!(cache.is_empty(), "expired entries are dropped when read");
    }

    #[test]
    fn a_full_cache_drops_the_expired_then_the_soonest_to_expire() {
        let start = Instant::now();
        let mut cache = Cache::new(2);
        cache.put(key(1), Verdict::Allowed, start);
        cache.put(key(2), Verdict::Forbidden, start);
        // Full: 2 (refused, expires first) makes room for 3.
        cache.put(key(3), Verdict::Allowed, start);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key(2), start), None);
        assert_eq!(cache.get(&key(1), start), Some(Verdict::Allowed));
        // Once 1 and 3 expired, both go for one newcomer.
        let later = start + ALLOWED_FOR;
        cache.put(key(4), Verdict::Forbidden, later);
        assert_eq!(cache.len(), 1);
        // Replacing a held token's verdict needs no room.
        cache.put(key(4), Verdict::Allowed, later);
        assert_eq!(cache.get(&key(4), later), Some(Verdict::Allowed));
        assert_eq!(Cache::new(0).len(), 0);
    }
}
