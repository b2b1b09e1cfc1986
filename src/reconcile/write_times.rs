//! When this operator last wrote each ModelDeployment's status, so that a
//! change of progress only is written at most once per `PROGRESS_WINDOW`,
//! and a pass never decides from a cache our own write has not reached.
//! New ModelDeployments awaiting their first status are followed here too
//! (`first_status` says how long that status may wait).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher;

use super::first_status::{self, Awaiting, key_of as key};
use crate::api::ModelDeployment;

/// How often a change of progress only (pod counts, messages) may be
/// written per ModelDeployment.
pub const PROGRESS_WINDOW: Duration = Duration::from_secs(2);

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

    /// How much longer a change of progress only in `md`'s status may
    /// wait: the rest of the window since our last write of it, or, when it
    /// has no status yet, the rest of its first status's hold.
    pub fn hold(&self, md: &ModelDeployment, now: &Time) -> Option<Duration> {
        let key = key(md);
        let since_write = {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            last.get(&key).map(|written| written.at.elapsed())
        };
        if let Some(elapsed) = since_write {
            return PROGRESS_WINDOW.checked_sub(elapsed);
        }
        if md.status.is_some() {
            return None;
        }
        let in_burst = self.first.in_burst(&key);
        let created = md.metadata.creation_timestamp.as_ref()?;
        let age = now.0.as_second() - created.0.as_second();
        let age = Duration::from_secs(u64::try_from(age).unwrap_or(0));
        first_status_hold(age, in_burst)
    }

    /// New ModelDeployments awaiting their first status.
    pub fn awaiting_first(&self) -> usize {
        self.first.entries()
    }

    /// Follows the ModelDeployment watch, for the count of those awaiting
    /// their first status.
    pub fn follow(&self, event: &watcher::Event<ModelDeployment>) {
        self.first.follow(event);
    }

    /// Whether `md` is a version of the object one of our status writes
    /// replaced within the window: the cache has not caught up with our own
    /// write, so a pass would decide from outdated status and its write
    /// would be refused. (A metric round that finishes right after the pass
    /// that started it and wrote status wakes its object that early.)
    pub fn outdated(&self, md: &ModelDeployment) -> bool {
        self.replaced(&key(md), md.metadata.resource_version.as_deref())
    }

    fn replaced(&self, key: &str, version: Option<&str>) -> bool {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(written), Some(version)) = (last.get(key), version) else {
            return false;
        };
        written.at.elapsed() < PROGRESS_WINDOW && written.replaced.iter().any(|v| v == version)
    }

    /// Our status write of `md` replaced the version `replaced`.
    pub fn wrote(&self, md: &ModelDeployment, replaced: Option<String>) {
        let key = &key(md);
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

/// How long a new ModelDeployment of `age` may still go without status:
/// `None` once it should have one. Pure, for the table test.
fn first_status_hold(age: Duration, in_burst: bool) -> Option<Duration> {
    let limit = match in_burst {
        true => first_status::BURST_HOLD,
        false => PROGRESS_WINDOW,
    };
    limit.checked_sub(age).filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(name: &str) -> ModelDeployment {
        crate::fixtures::md().name(name).build()
    }

    #[test]
    fn a_first_status_waits_a_moment_alone_and_longer_in_a_burst() {
        let s = Duration::from_secs;
        let cases = [
            ("alone, just created", s(0), false, Some(s(2))),
            ("alone, 1 s old", s(1), false, Some(s(1))),
            ("alone, window over", s(2), false, None),
            ("burst, 3 s old", s(3), true, Some(s(117))),
            ("burst, hold over", s(120), true, None),
            ("burst, long over", s(600), true, None),
        ];
        for (what, age, in_burst, want) in cases {
            assert_eq!(first_status_hold(age, in_burst), want, "{what}");
        }
    }

    #[test]
    fn a_version_our_own_write_replaced_is_outdated() {
        let writes = WriteTimes::default();
        assert!(!writes.replaced("ml/m", Some("7")), "nothing written yet");
        writes.wrote(&md("m"), Some("7".into()));
        // Two writes in one pass: the second replaces the first's version.
        writes.wrote(&md("m"), Some("8".into()));
        assert!(writes.replaced("ml/m", Some("7")));
        assert!(writes.replaced("ml/m", Some("8")));
        assert!(
            !writes.replaced("ml/m", Some("9")),
            "our last write's version"
        );
        assert!(!writes.replaced("ml/other", Some("7")));
        assert!(!writes.replaced("ml/m", None));
        for v in 9..30 {
            writes.wrote(&md("m"), Some(v.to_string()));
        }
        assert!(!writes.replaced("ml/m", Some("7")), "bounded");
        assert!(writes.replaced("ml/m", Some("29")));
    }
}
