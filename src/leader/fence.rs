//! The write fence: the controller's client refuses every write once the
//! leader's hold on the lease can no longer be vouched for.
//!
//! The lease crate renews the lease but, when the API server is unreachable,
//! keeps reporting the last state it saw: it never says "lost" during a
//! partition. So the leader keeps its own deadline: the last renewal it
//! observed in the Lease plus the renew deadline (shorter than the lease
//! duration). Past it, writes are refused in the client itself, inside every
//! reconcile task, before another replica may take the lease.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use kube::Client;
use kube::client::Body;

/// Until when this replica may write; `None` when it may not at all.
#[derive(Clone, Default)]
pub struct WriteFence {
    until: Arc<Mutex<Option<Instant>>>,
}

/// The error a fenced write fails with.
#[derive(Debug, thiserror::Error)]
#[error("write refused: this replica no longer holds the leader lease")]
pub struct NotLeader;

impl WriteFence {
    /// Writes are allowed until `until`.
    pub fn open_until(&self, until: Instant) {
        *self.lock() = Some(until);
    }

    /// No more writes, for good.
    pub fn close(&self) {
        *self.lock() = None;
    }

    pub fn until(&self) -> Option<Instant> {
        *self.lock()
    }

    pub fn allows_writes(&self) -> bool {
        self.until().is_some_and(|until| Instant::now() < until)
    }

    /// A client whose writes pass only while the fence allows them; reads
    /// (including watches) always pass, so caches keep working.
    pub fn client(&self, client: Client) -> Client {
        let namespace = client.default_namespace().to_string();
        Client::new(
            Fenced {
                client,
                fence: self.clone(),
            },
            namespace,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long our hold on the lease can be trusted, as a local deadline:
/// `None` unless `identity` holds it. `renewTime` was written by this very
/// replica with its own clock, so comparing it with `now` involves no skew
/// between machines; other replicas wait for the full lease duration, which
/// is longer than `renew_deadline`.
pub fn trusted_until(
    spec: Option<&LeaseSpec>,
    identity: &str,
    renew_deadline: Duration,
    now: SystemTime,
    now_instant: Instant,
) -> Option<Instant> {
    let spec = spec?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    let left = (renewed + renew_deadline)
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
        // A renewTime in the future (a clock stepped back) earns no extra time.
        .min(renew_deadline);
    Some(now_instant + left)
}

/// The tower service behind a fenced client: the real client, consulted
/// only when the fence allows the request.
#[derive(Clone)]
struct Fenced {
    client: Client,
    fence: WriteFence,
}

fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl tower::Service<Request<Body>> for Fenced {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (client, fence) = (self.client.clone(), self.fence.clone());
        Box::pin(async move {
            // Checked at the moment the request leaves, not when the
            // reconcile started: a reconcile may outlive the lease.
            if writes(request.method()) && !fence.allows_writes() {
                return Err(kube::Error::Service(Box::new(NotLeader)));
            }
            client.send(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use kube::Api;
    use kube::api::{Patch, PatchParams};

    fn spec(holder: &str, renewed: SystemTime) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(
                renewed.try_into().expect("a representable timestamp"),
            )),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn trust_runs_from_the_last_renewal_for_the_renew_deadline() {
        let (now, instant) = (SystemTime::now(), Instant::now());
        let deadline = Duration::from_secs(10);
        let s = spec("me", now - Duration::from_secs(4));
        let until = trusted_until(Some(&s), "me", deadline, now, instant);
        assert_eq!(until, Some(instant + Duration::from_secs(6)));
    }

    #[test]
    fn no_trust_in_a_lease_someone_else_holds_or_nobody_renewed() {
        let (now, instant) = (SystemTime::now(), Instant::now());
        let deadline = Duration::from_secs(10);
        let theirs = spec("them", now);
        assert_eq!(
            trusted_until(Some(&theirs), "me", deadline, now, instant),
            None
        );
        let released = LeaseSpec::default();
        assert_eq!(
            trusted_until(Some(&released), "me", deadline, now, instant),
            None
        );
        assert_eq!(trusted_until(None, "me", deadline, now, instant), None);
        let unrenewed = LeaseSpec {
            renew_time: None,
            ..spec("me", now)
        };
        assert_eq!(
            trusted_until(Some(&unrenewed), "me", deadline, now, instant),
            None
        );
    }

    #[test]
    fn a_stale_renewal_is_trusted_no_longer_and_a_future_one_no_longer_than_the_deadline() {
        let (now, instant) = (SystemTime::now(), Instant::now());
        let deadline = Duration::from_secs(10);
        let stale = spec("me", now - Duration::from_secs(30));
        assert_eq!(
            trusted_until(Some(&stale), "me", deadline, now, instant),
            Some(instant)
        );
        let future = spec("me", now + Duration::from_secs(30));
        assert_eq!(
            trusted_until(Some(&future), "me", deadline, now, instant),
            Some(instant + deadline)
        );
    }

    #[test]
    fn a_fence_allows_writes_only_before_its_deadline() {
        let fence = WriteFence::default();
        assert!(!fence.allows_writes(), "closed until opened");
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.allows_writes());
        fence.open_until(Instant::now() - Duration::from_millis(1));
        assert!(!fence.allows_writes());
        fence.open_until(Instant::now() + Duration::from_secs(60));
        fence.close();
        assert!(!fence.allows_writes());
    }

    /// A closed fence stops writes before they reach the API server, and
    /// lets reads through.
    #[tokio::test]
    async fn a_closed_fence_refuses_writes_and_passes_reads() {
        let (client, mut api) = crate::fixtures::api_calls::mock_api();
        let fence = WriteFence::default();
        let client = fence.client(client);
        let leases =
            Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client, "default");

        let refused = leases
            .patch(
                "l",
                &PatchParams::apply("t"),
                &Patch::Apply(serde_json::json!({})),
            )
            .await
            .expect_err("a fenced write fails");
        assert!(
            matches!(&refused, kube::Error::Service(e) if e.is::<NotLeader>()),
            "{refused:?}"
        );

        let server = tokio::spawn(async move {
            // Only the read arrives.
            let read = api.expect(Method::GET, "/leases/l").await;
            let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}});
            read.respond(200, &lease);
        });
        leases.get("l").await.expect("a read passes");
        server.await.expect("mock server");
    }
}
