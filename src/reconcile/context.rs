//! What every reconcile of one watched scope shares: the client, the
//! caches, the event reporter, the outbound connections and the status
//! write times.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::Reporter;

use super::write_times::WriteTimes;
use crate::cache::Stores;
use crate::cache::snapshots::Snapshots;
use crate::outbound::Outbound;
use crate::outbound::rounds::Wake;
use crate::resources::labels::MANAGER;

/// What every reconcile of one watched scope shares.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    /// Who sends the Events. Each Event is sent through a recorder of its
    /// own: kube's recorder keeps every event it sent for six minutes to
    /// fold repeats into a series, which at 1,000 new models held 9 MiB
    /// (and kept it until the next event). Our events are transitions, so
    /// repeats are rare and a repeat is simply a new Event.
    pub reporter: Reporter,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Prometheus and the alert channels.
    pub outbound: Arc<Outbound>,
    /// When each ModelDeployment's status was last written, so progress
    /// is written at most once per window.
    pub status_writes: WriteTimes,
    /// Wakes a ModelDeployment of this scope once its metric round is done.
    pub wake: Wake,
    /// Revision snapshots passes have read, within a byte budget.
    pub snapshots: Snapshots,
    /// What the platform's admin set for every model pod.
    pub platform: crate::resources::Platform,
}

impl Context {
    pub fn new(
        client: Client,
        stores: Stores,
        metrics: Arc<crate::metrics::Metrics>,
        outbound: Arc<Outbound>,
        wake: Wake,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: None,
        };
        Self {
            reporter,
            client,
            stores,
            metrics,
            outbound,
            status_writes: Default::default(),
            wake,
            snapshots: Snapshots::default(),
            platform: Default::default(),
        }
    }
}
