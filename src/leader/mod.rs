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

mod fence;

pub use fence::{NotLeader, WriteFence, trusted_until};

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError, LeaseParams};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Leader election flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ElectionArgs {
    /// Elect one leader among the operator's replicas through a Lease; only
    /// the leader reconciles. `--leader-elect=false` runs without a Lease
    /// (and without permissions on Leases): for exactly one replica.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "model-operator")]
    pub lease_name: String,
    /// Namespace of the Lease. Default: $POD_NAMESPACE, else `default`.
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a lease stays valid after its last renewal: a crashed
    /// leader is replaced within about this time.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = seconds)]
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops writing (must be
    /// shorter than --lease-duration; the difference absorbs clock skew).
    #[arg(long, env = "LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = seconds)]
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby tries to acquire.
    #[arg(long, env = "LEASE_RETRY_PERIOD", default_value = "2s", value_parser = seconds)]
    pub retry_period: Duration,
}

/// Whole seconds, as `15s` or `15` (Lease durations are whole seconds).
fn seconds(value: &str) -> Result<Duration, String> {
    value
        .strip_suffix('s')
        .unwrap_or(value)
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{value}` is not a whole number of seconds like `15s`"))
}

/// A validated election configuration.
#[derive(Clone, Debug)]
pub struct Election {
    pub lease_name: String,
    pub namespace: String,
    /// Unique per process: the host (pod) name plus a random suffix, so a
    /// restarted pod never mistakes its predecessor's lease for its own.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Election {
    /// `None` when leader election is off.
    pub fn from_args(args: ElectionArgs) -> Result<Option<Self>, Error> {
        if !args.leader_elect {
            return Ok(None);
        }
        let (duration, deadline, retry) =
            (args.lease_duration, args.renew_deadline, args.retry_period);
        if !(Duration::from_secs(1) <= retry && retry < deadline && deadline < duration) {
            return Err(Error::Timing(format!(
                "need 1s <= retry period ({retry:?}) < renew deadline ({deadline:?}) < lease duration ({duration:?})"
            )));
        }
        let namespace = args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".into());
        Ok(Some(Self {
            lease_name: args.lease_name,
            namespace,
            identity: identity(),
            lease_duration: duration,
            renew_deadline: deadline,
            retry_period: retry,
        }))
    }

    fn params(&self) -> LeaseParams {
        let duration = self.lease_duration.as_secs();
        // The crate renews when `grace` is left before expiry: renewing
        // every retry period leaves several tries before the renew deadline.
        let grace = duration - self.retry_period.as_secs();
        LeaseParams::new(self.identity.clone(), duration, grace)
    }
}

fn identity() -> String {
    let host = ["POD_NAME", "HOSTNAME"]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "model-operator".into());
    // RandomState is seeded from the OS: random enough for uniqueness.
    let suffix = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{host}-{:08x}", suffix as u32)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid leader election timing: {0}")]
    Timing(String),

    #[error("cannot take part in leader election: {0}")]
    Lease(#[from] LeaseManagerError),

    #[error("lost the leader lease ({0}); exiting so that the replica restarts as a standby")]
    Lost(String),

    #[error(transparent)]
    Controller(#[from] crate::controller::Error),
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
    F: Future<Output = Result<(), crate::controller::Error>>,
{
    tracing::info!(identity = %election.identity, lease = %election.lease_name,
        namespace = %election.namespace, "joining leader election");
    let manager = tokio::select! {
        manager = campaign(&client, &election, &status) => manager?,
        () = shutdown_signal() => {
            tracing::info!("stopping as a standby");
            return Ok(());
        }
    };
    let leases = Api::<Lease>::namespaced(client.clone(), &election.namespace);
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
            &election.namespace,
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
            let holder = Api::<Lease>::namespaced(client.clone(), &election.namespace)
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
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        election: ElectionArgs,
    }

    fn parse(args: &[&str]) -> Result<Option<Election>, Error> {
        let cli = Cli::try_parse_from(std::iter::once("op").chain(args.iter().copied()))
            .map_err(|e| Error::Timing(e.to_string()))?;
        Election::from_args(cli.election)
    }

    #[test]
    fn on_by_default_with_client_go_timings() {
        let e = parse(&["--lease-namespace", "ops"])
            .expect("valid")
            .expect("on");
        assert_eq!(
            (e.lease_duration, e.renew_deadline, e.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert_eq!(
            (e.lease_name.as_str(), e.namespace.as_str()),
            ("model-operator", "ops")
        );
        let params = e.params();
        assert_eq!(params, LeaseParams::new(e.identity.clone(), 15, 13));
    }

    #[test]
    fn can_be_switched_off_and_on_explicitly() {
        assert!(parse(&["--leader-elect=false"]).expect("valid").is_none());
        assert!(parse(&["--leader-elect"]).expect("valid").is_some());
        assert!(parse(&["--leader-elect", "true"]).expect("valid").is_some());
    }

    #[test]
    fn timings_must_nest() {
        for bad in [
            &["--renew-deadline", "15s"][..],
            &["--retry-period", "10"],
            &["--retry-period", "0s"],
            &["--lease-duration", "5s"],
        ] {
            assert!(
                matches!(parse(bad), Err(Error::Timing(_))),
                "{bad:?} was accepted"
            );
        }
        let e = parse(&[
            "--lease-duration",
            "8",
            "--renew-deadline",
            "5s",
            "--retry-period",
            "1s",
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(e.params(), LeaseParams::new(e.identity.clone(), 8, 7));
    }

    #[test]
    fn identities_differ_between_processes_on_one_host() {
        assert_ne!(identity(), identity());
    }
}
