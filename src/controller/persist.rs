//! Persist: the status write, and when a changed status is worth one.
//!
//! A status change a person or Argo CD acts on (phase, a condition's status
//! or reason, revisions, history, analysis, alerts and their outbox,
//! observedGeneration) is written at once. A change of progress only (pod
//! counts, messages) is written at most once per `PROGRESS_WINDOW` per
//! ModelDeployment: a user still sees counts move within a couple of
//! seconds, and a rollout of N pods costs a few writes instead of one per
//! pod event.
//!
//! A new ModelDeployment's first status counts as progress too, until its
//! first rollout has an outcome, held from its creation (`first_status`
//! says how long): a model that is Ready within the window gets one status
//! write, not three. Nothing is lost by waiting: the decision of a first
//! rollout is derived again from the cluster on the next pass
//! (`rollout::decide` records a running revision the history lacks).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;

use super::context::Context;
use super::error::Error;
use super::first_status::{self, Awaiting};
use super::observe::Snapshot;
use crate::api::{ModelDeployment, ModelDeploymentStatus, Phase};
use crate::resources::labels::MANAGER;

pub const PROGRESS_WINDOW: Duration = Duration::from_secs(2);

/// Whether a status write is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing changed.
    Never,
    Now,
    /// Only progress changed and a write went out less than
    /// `PROGRESS_WINDOW` ago: write on the pass after this long.
    After(Duration),
}

/// `hold`: how much longer a change of progress only may wait (what is left
/// of the window since this operator last wrote this ModelDeployment's
/// status, or for one without status, of its first status's hold).
pub fn due(
    stored: Option<&ModelDeploymentStatus>,
    new: &ModelDeploymentStatus,
    hold: Option<Duration>,
) -> Due {
    if stored == Some(new) {
        return Due::Never;
    }
    let progress_only = match stored {
        Some(stored) => without_progress(stored) == without_progress(new),
        // A first status holds back "accepted, rolling out", never an
        // outcome.
        None => matches!(new.phase, None | Some(Phase::Pending | Phase::Progressing)),
    };
    match hold {
        Some(left) if progress_only && !left.is_zero() => Due::After(left),
        _ => Due::Now,
    }
}

/// The status with its progress fields blanked: what is left is what a
/// person or a tool acts on.
fn without_progress(status: &ModelDeploymentStatus) -> ModelDeploymentStatus {
    let mut s = status.clone();
    s.replicas = 0;
    s.ready_replicas = 0;
    s.updated_replicas = 0;
    s.available_replicas = 0;
    s.ready_summary = None;
    for c in &mut s.conditions {
        c.message.clear();
    }
    s
}

/// When this operator last wrote each ModelDeployment's status, for the
/// progress window only, and which resourceVersions those writes replaced.
/// Entries older than the window mean nothing and are dropped, so the map
/// holds only objects written in the last seconds (deleted ones included).
#[derive(Default)]
pub struct WriteTimes {
    last: Mutex<HashMap<String, Written>>,
    first: Awaiting,
}

/// How many replaced versions of one object are remembered.
const REPLACED_KEPT: usize = 8;

struct Written {
    at: Instant,
    /// The versions this window's writes replaced: a pass that sees one of
    /// them works from a cache our own write has not reached yet.
    replaced: Vec<String>,
}

impl WriteTimes {
    /// Objects written within the window (older entries mean nothing and
    /// go with the next write).
    pub fn entries(&self) -> usize {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.values()
            .filter(|w| w.at.elapsed() < PROGRESS_WINDOW)
            .count()
    }

    /// How much longer a change of progress only in `seen`'s status may
    /// wait: the rest of the window since our last write of it, or, when it
    /// has no status yet, the rest of its first status's hold.
    pub fn hold(&self, seen: &Snapshot) -> Option<Duration> {
        let key = key(seen);
        let since_write = {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            last.get(&key).map(|written| written.at.elapsed())
        };
        if let Some(elapsed) = since_write {
            return PROGRESS_WINDOW.checked_sub(elapsed);
        }
        if seen.md.status.is_some() {
            return None;
        }
        let in_burst = self.first.in_burst(&key);
        let created = seen.md.metadata.creation_timestamp.as_ref()?;
        let age = seen.now.0.as_second() - created.0.as_second();
        let age = Duration::from_secs(u64::try_from(age).unwrap_or(0));
        first_status::hold(age, in_burst)
    }

    /// New ModelDeployments awaiting their first status.
    pub fn awaiting_first(&self) -> usize {
        self.first.entries()
    }

    /// Follows the ModelDeployment watch, for the count of those awaiting
    /// their first status.
    pub fn observe(&self, event: &watcher::Event<ModelDeployment>) {
        self.first.observe(event);
    }

    /// Whether `seen` is a version of the object one of our status writes
    /// replaced within the window: the cache has not caught up with our own
    /// write, so a pass would decide from outdated status and its write
    /// would be refused. (A metric round that finishes right after the pass
    /// that started it and wrote status wakes its object that early.)
    pub fn outdated(&self, seen: &Snapshot) -> bool {
        self.replaced(&key(seen), seen.md.metadata.resource_version.as_deref())
    }

    fn replaced(&self, key: &str, version: Option<&str>) -> bool {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(written), Some(version)) = (last.get(key), version) else {
            return false;
        };
        written.at.elapsed() < PROGRESS_WINDOW && written.replaced.iter().any(|v| v == version)
    }

    fn wrote(&self, key: &str, replaced: Option<String>) {
        self.first.done(key);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|_, w| w.at.elapsed() < PROGRESS_WINDOW);
        let written = last.entry(key.to_string()).or_insert_with(|| Written {
            at: Instant::now(),
            replaced: Vec::new(),
        });
        written.at = Instant::now();
        written.replaced.extend(replaced);
        // An object written again and again within the window keeps its
        // entry alive: only the latest versions can still be in a cache.
        let excess = written.replaced.len().saturating_sub(REPLACED_KEPT);
        written.replaced.drain(..excess);
    }
}

/// Server-side apply of the whole status: fields the new status leaves out
/// are removed. The resourceVersion makes it conditional: a write based on an
/// outdated object (a stale cache, or another operator got there first) is
/// refused with a conflict and retried from fresh state, so decisions never
/// overwrite each other. `version` is the resourceVersion the status was
/// derived from; the new one is returned.
pub async fn write(
    seen: &Snapshot,
    status: &ModelDeploymentStatus,
    version: Option<String>,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let api = kube::Api::<ModelDeployment>::namespaced(ctx.client.clone(), &seen.namespace);
    let patch = json!({
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"resourceVersion": &version},
        "status": status,
    });
    let written = api
        .patch_status(
            &seen.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.status_writes.wrote(&key(seen), version);
    Ok(written.resource_version())
}

fn key(seen: &Snapshot) -> String {
    format!("{}/{}", seen.namespace, seen.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn status(phase: Phase, ready: i32, message: &str) -> ModelDeploymentStatus {
        ModelDeploymentStatus {
            phase: Some(phase),
            ready_replicas: ready,
            ready_summary: Some(format!("{ready}/2")),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: "NotEnoughReplicas".into(),
                message: message.into(),
                observed_generation: Some(1),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            }],
            ..ModelDeploymentStatus::default()
        }
    }

    #[test]
    fn progress_is_written_at_most_once_per_window_and_the_rest_at_once() {
        let stored = status(Phase::Progressing, 0, "0/2 pods available");
        let progressed = status(Phase::Progressing, 1, "1/2 pods available");
        let healthy = status(Phase::Healthy, 2, "2/2 pods available");
        // Half a second into the window: 1.5 s of hold left.
        let just = Some(Duration::from_millis(1500));
        let cases = [
            ("unchanged", Some(&stored), &stored, just, Due::Never),
            (
                "progress right after a write",
                Some(&stored),
                &progressed,
                just,
                Due::After(Duration::from_millis(1500)),
            ),
            (
                "progress, no write within the window",
                Some(&stored),
                &progressed,
                None,
                Due::Now,
            ),
            (
                "phase changed right after a write",
                Some(&stored),
                &healthy,
                just,
                Due::Now,
            ),
            (
                "first status, created half a second ago",
                None,
                &stored,
                just,
                Due::After(Duration::from_millis(1500)),
            ),
            (
                "first status of an object created long ago",
                None,
                &stored,
                None,
                Due::Now,
            ),
            (
                "first status that is already an outcome",
                None,
                &healthy,
                just,
                Due::Now,
            ),
            (
                "first status held for a burst",
                None,
                &stored,
                Some(Duration::from_secs(57)),
                Due::After(Duration::from_secs(57)),
            ),
        ];
        for (what, stored, new, since, want) in cases {
            assert_eq!(due(stored, new, since), want, "{what}");
        }
    }

    #[test]
    fn a_version_our_own_write_replaced_is_outdated() {
        let writes = WriteTimes::default();
        assert!(!writes.replaced("ns/m", Some("7")), "nothing written yet");
        writes.wrote("ns/m", Some("7".into()));
        // Two writes in one pass: the second replaces the first's version.
        writes.wrote("ns/m", Some("8".into()));
        assert!(writes.replaced("ns/m", Some("7")));
        assert!(writes.replaced("ns/m", Some("8")));
        assert!(
            !writes.replaced("ns/m", Some("9")),
            "our last write's version"
        );
        assert!(!writes.replaced("ns/other", Some("7")));
        assert!(!writes.replaced("ns/m", None));
        for v in 9..30 {
            writes.wrote("ns/m", Some(v.to_string()));
        }
        assert!(!writes.replaced("ns/m", Some("7")), "bounded");
        assert!(writes.replaced("ns/m", Some("29")));
    }

    #[test]
    fn a_condition_reason_change_is_never_held_back() {
        let stored = status(Phase::Progressing, 1, "1/2 pods available");
        let mut new = stored.clone();
        new.conditions[0].reason = "Serving".into();
        assert_eq!(due(Some(&stored), &new, Some(PROGRESS_WINDOW)), Due::Now);
    }
}
