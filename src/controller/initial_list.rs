//! How the caches get their first copy of the cluster: one LIST per kind, or
//! a streaming list (a watch that first replays every object, KEP 3157).
//! A LIST answer is parsed as a whole, so at start and at every relist the
//! operator briefly holds it next to the cache; a streaming list never does.

use clap::ValueEnum;
use kube::Client;
use kube::runtime::watcher;

/// The `--initial-list` choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum InitialList {
    /// Streaming lists where the API server turns them on by default
    /// (Kubernetes 1.32 and from 1.34 on; 1.33 ships the gate off), LIST
    /// otherwise.
    #[default]
    Auto,
    /// Always streaming lists (the WatchList feature gate must be on).
    Stream,
    /// Always LIST then WATCH.
    List,
}

/// Kubernetes minor versions whose API servers serve streaming lists by
/// default.
fn streams_by_default(minor: u32) -> bool {
    minor == 32 || minor >= 34
}

/// The decision, from the choice and the server's minor version (`None`
/// when it could not be read or parsed).
pub fn streams(choice: InitialList, server_minor: Option<u32>) -> bool {
    match choice {
        InitialList::Stream => true,
        InitialList::List => false,
        InitialList::Auto => server_minor.is_some_and(streams_by_default),
    }
}

/// The minor version, as "36" or "36+" (some providers add a suffix).
fn parse_minor(minor: &str) -> Option<u32> {
    minor.trim_end_matches('+').parse().ok()
}

/// The watcher configuration every cache starts from.
pub async fn base_config(client: &Client, choice: InitialList) -> watcher::Config {
    let minor = match choice {
        InitialList::Auto => match client.apiserver_version().await {
            Ok(info) => parse_minor(&info.minor),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the API server's version; using LIST");
                None
            }
        },
        _ => None,
    };
    let stream = streams(choice, minor);
    tracing::info!(
        initial_list = if stream { "streaming" } else { "list" },
        "cache start"
    );
    // Lists come from the API server's watch cache (any_semantic) rather
    // than a quorum read of etcd: a restart or relist of 1,000 objects is
    // then cheap for the API server, and the watch continues from there.
    let config = watcher::Config::default().any_semantic();
    if stream {
        config.streaming_lists()
    } else {
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_and_server_version() {
        let cases = [
            (InitialList::Auto, Some(36), true),
            (InitialList::Auto, Some(34), true),
            (InitialList::Auto, Some(33), false),
            (InitialList::Auto, Some(32), true),
            (InitialList::Auto, Some(29), false),
            (InitialList::Auto, None, false),
            (InitialList::Stream, Some(29), true),
            (InitialList::List, Some(36), false),
        ];
        for (choice, minor, want) in cases {
            assert_eq!(streams(choice, minor), want, "{choice:?} {minor:?}");
        }
    }

    #[test]
    fn minor_versions_with_provider_suffixes() {
        assert_eq!(parse_minor("36"), Some(36));
        assert_eq!(parse_minor("36+"), Some(36));
        assert_eq!(parse_minor("x"), None);
    }
}
