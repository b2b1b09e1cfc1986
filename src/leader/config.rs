//! Leader election settings: the flags, their checks and the identity.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use kube_lease_manager::LeaseParams;

use super::Error;

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
    /// Namespace of the Lease. Default: $POD_NAMESPACE, else the client's
    /// namespace (in a pod: its own; else the kubeconfig context's, or
    /// `default`).
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
    /// `None`: the client's namespace.
    pub namespace: Option<String>,
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
            .filter(|ns| !ns.is_empty());
        Ok(Some(Self {
            lease_name: args.lease_name,
            namespace,
            identity: identity(),
            lease_duration: duration,
            renew_deadline: deadline,
            retry_period: retry,
        }))
    }

    /// Where the Lease lives.
    pub fn namespace<'a>(&'a self, client: &'a kube::Client) -> &'a str {
        self.namespace
            .as_deref()
            .unwrap_or_else(|| client.default_namespace())
    }

    pub(super) fn params(&self) -> LeaseParams {
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
            (e.lease_name.as_str(), e.namespace.as_deref()),
            ("model-operator", Some("ops"))
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
