//! Leader election: several replicas run, one reconciles.
//!
//! The Lease lock itself is `kube-lease-manager`'s (server-side-apply
//! conflicts make two holders impossible). Around it:
//! - a standby runs no controller at all, so it cannot write; it retries for
//!   the lease every retry period and is ready (`/readyz`) as a standby;
//! - the leader's writes go through a [`WriteFence`]: refused once its last
//!   observed renewal is older than the renew deadline, which is shorter than
//!   the lease duration other replicas wait out;
//! - a leader that loses the lease returns [`Error::Lost`]; the binary exits
//!   non-zero and Kubernetes restarts it as a standby (no state to unwind);
//! - on SIGTERM the controller finishes its reconciles, then the lease is
//!   released so a standby takes over at its next retry, not after expiry.
//!
//! Requests on `coordination.k8s.io/leases` in the lease namespace: get,
//! create (once, when the Lease is missing) and patch.

mod config;
mod fence;

pub use config::{Election, ElectionArgs};
pub use fence::{NotLeader, WriteFence, trusted_until};

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError};
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid leader election timing: {0}")]
    Timing(String),

    #[error("cannot take part in leader election: {0}")]
    Lease(#[from] LeaseManagerError),

    #[error("lost the leader lease ({0}); exiting so that the replica restarts as a standby")]
    Lost(String),

    #[error(transparent)]
    Controller(#[from] crate::error::Error),
}

/// What the leader election reports to the endpoints.
pub struct Status {
    pub metrics: Arc<Metrics>,
    /// `/readyz`: true for a standby once it takes part in the election; the
    /// controller sets it for the leader once its caches are filled.
    pub ready: watch::Sender<bool>,
}

/// Waits for the lease, then runs `work` with a fenced client until it ends
/// (SIGTERM) or the lease is lost. SIGTERM while standing by just returns.
pub async fn run<W, F>(
    client: Client,
    election: Election,
    status: Status,
    work: W,
) -> Result<(), Error>
where
    W: FnOnce(Client) -> F,
    F: Future<Output = Result<(), crate::error::Error>>,
{
    tracing::info!(identity = %election.identity, lease = %election.lease_name,
        namespace = election.namespace(&client), "joining leader election");
    let manager = tokio::select! {
        manager = campaign(&client, &election, &status) => manager?,
        () = shutdown_signal() => {
            tracing::info!("stopping as a standby");
            return Ok(());
        }
    };
    let leases = Api::<Lease>::namespaced(client.clone(), election.namespace(&client));
    let fence = WriteFence::default();
    // Not a single write before our renewal is confirmed.
    match confirm(&leases, &election).await {
        Ok(Some(until)) => fence.open_until(until),
        Ok(None) => return Err(Error::Lost("taken before the first write".into())),
        Err(e) => return Err(Error::Lost(format!("cannot read the lease: {e}"))),
    }
    tracing::info!(identity = %election.identity, "leading: reconciling starts");
    status.ready.send_replace(false);
    status.metrics.leader.set(1);
    let (mut leading, renewals) = manager.watch().await;
    let outcome = tokio::select! {
        biased;
        lost = hold(&leases, &election, &fence, &mut leading) => Err(lost),
        done = work(fence.client(client)) => Ok(done),
    };
    fence.close();
    status.metrics.leader.set(0);
    match outcome {
        Err(lost) => {
            // Do not release: the lease may already be someone else's.
            renewals.abort();
            Err(lost)
        }
        Ok(done) => {
            // The controller has finished its reconciles: hand over now.
            drop(leading);
            match tokio::time::timeout(election.retry_period * 2, renewals).await {
                Ok(Ok(Ok(_))) => tracing::info!("released the lease"),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "could not release the lease; it expires by itself")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "lease task failed; the lease expires by itself")
                }
                Err(_) => tracing::warn!("releasing the lease timed out; it expires by itself"),
            }
            Ok(done?)
        }
    }
}

/// Tries for the lease until this replica holds it. A fresh manager each
/// retry period: the crate's own loop would sleep until the current lease
/// expires, and so miss a lease released early by a leader shutting down.
/// Dropping a manager mid-attempt is safe: the Lease is the only state, and a
/// lease we took is recognised as ours by the next manager (same identity).
async fn campaign(
    client: &Client,
    election: &Election,
    status: &Status,
) -> Result<LeaseManager, Error> {
    let mut standing_by = false;
    loop {
        let manager = LeaseManager::new(
            client.clone(),
            &election.lease_name,
            election.namespace(client),
            election.params(),
            LeaseCreateMode::AutoCreate,
        )
        .await;
        let manager = match manager {
            Ok(m) => m,
            // Fail fast at startup (e.g. no permission on Leases), like the
            // controller does when the CRD is missing.
            Err(e) if !standing_by => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the lease; retrying");
                tokio::time::sleep(election.retry_period).await;
                continue;
            }
        };
        tokio::select! {
            acquired = manager.changed() => match acquired {
                Ok(true) => return Ok(manager),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "lease attempt failed; retrying"),
            },
            () = tokio::time::sleep(election.retry_period) => {}
        }
        if !standing_by {
            standing_by = true;
            let holder = Api::<Lease>::namespaced(client.clone(), election.namespace(client))
                .get_opt(&election.lease_name)
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity);
            tracing::info!(
                holder = holder.as_deref().unwrap_or("<none>"),
                "standing by"
            );
            status.ready.send_replace(true);
        }
    }
}

/// Keeps the fence's deadline up to date from the Lease; returns when this
/// replica can no longer vouch for its hold on it.
async fn hold(
    leases: &Api<Lease>,
    election: &Election,
    fence: &WriteFence,
    leading: &mut watch::Receiver<bool>,
) -> Error {
    loop {
        let Some(until) = fence.until() else {
            return Error::Lost("fence closed".into());
        };
        let next = (Instant::now() + election.retry_period).min(until);
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            changed = leading.changed() => {
                if changed.is_err() || !*leading.borrow_and_update() {
                    fence.close();
                    return Error::Lost("the lease manager saw another holder".into());
                }
                continue;
            }
        }
        if Instant::now() >= until {
            fence.close();
            return Error::Lost(format!(
                "not renewed within the renew deadline of {:?}",
                election.renew_deadline
            ));
        }
        match tokio::time::timeout_at(until.into(), confirm(leases, election)).await {
            Ok(Ok(Some(until))) => fence.open_until(until),
            Ok(Ok(None)) => {
                fence.close();
                return Error::Lost("another replica holds it".into());
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the lease to confirm leadership"),
            // The deadline passed while waiting: the next turn says so.
            Err(_) => {}
        }
    }
}

/// Reads the Lease: until when our hold on it is trustworthy.
async fn confirm(leases: &Api<Lease>, election: &Election) -> Result<Option<Instant>, kube::Error> {
    let lease = leases.get(&election.lease_name).await?;
    Ok(trusted_until(
        lease.spec.as_ref(),
        &election.identity,
        election.renew_deadline,
        SystemTime::now(),
        Instant::now(),
    ))
}

/// SIGTERM (Kubernetes) or Ctrl-C (a terminal).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn election() -> Election {
        Election {
            lease_name: "model-operator".into(),
            namespace: Some("ops".into()),
            identity: "me-1".into(),
            lease_duration: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_secs(1),
        }
    }

    /// Runs `hold` against an API server that answers every read of the
    /// Lease with `answer`, the fence open for `trusted`, and the crate
    /// reporting `leading`; the reason it gave up. The fence must be closed.
    async fn hold_until_lost(
        answer: (u16, serde_json::Value),
        trusted: Duration,
        leading: bool,
    ) -> String {
        // hold only reads the Lease.
        let (client, api) = crate::fixtures::api_calls::mock_api();
        let server = tokio::spawn(api.answer_every(
            http::Method::GET,
            "/leases/model-operator",
            answer.0,
            answer.1,
        ));
        let leases = Api::namespaced(client, "ops");
        let fence = WriteFence::default();
        fence.open_until(Instant::now() + trusted);
        let (tx, mut reported) = watch::channel(true);
        if !leading {
            tx.send_replace(false);
        }
        let lost = hold(&leases, &election(), &fence, &mut reported).await;
        server.abort();
        assert!(!fence.allows_writes(), "the fence is closed");
        match lost {
            Error::Lost(why) => why,
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn a_leader_whose_lease_another_replica_holds_stops_at_once() {
        let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "model-operator", "namespace": "ops"},
            "spec": {"holderIdentity": "them-2", "renewTime": "2026-01-01T00:00:00.000000Z", "leaseDurationSeconds": 3}});
        let why = hold_until_lost((200, lease), Duration::from_secs(60), true).await;
        assert!(why.contains("another replica"), "{why}");
    }

    /// The API server is unreachable (errors): the crate would keep saying
    /// "leader"; the fence closes at the renew deadline all the same.
    #[tokio::test]
    async fn a_leader_that_cannot_confirm_its_lease_stops_at_the_renew_deadline() {
        let status = serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": "etcd is down", "reason": "InternalError", "code": 500});
        let why = hold_until_lost((500, status), election().renew_deadline, true).await;
        assert!(why.contains("renew deadline"), "{why}");
    }

    #[tokio::test]
    async fn a_leader_the_lease_manager_reports_deposed_stops() {
        let why =
            hold_until_lost((500, serde_json::json!({})), Duration::from_secs(60), false).await;
        assert!(why.contains("lease manager"), "{why}");
    }
}
