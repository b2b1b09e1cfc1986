//! Waiting with a deadline and a failure that explains itself.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a probe of `eventually` found: a value, or not yet (with what it
/// saw instead, for the failure message).
pub trait Probed<T> {
    fn found(self) -> Result<T, String>;
}

impl<T> Probed<T> for Option<T> {
    fn found(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".to_string())
    }
}

impl<T, E: Debug> Probed<T> for Result<T, E> {
    fn found(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

impl Probed<()> for bool {
    fn found(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

/// Polls `probe` until it finds a value, or panics after `timeout` saying
/// what was awaited and what the probe saw last (an `Err`'s content).
pub async fn eventually<T, P: Probed<T>, F: Future<Output = P>>(
    what: &str,
    timeout: Duration,
    probe: impl Fn() -> F,
) -> T {
    let start = Instant::now();
    loop {
        let last = match probe().await.found() {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until `ready` holds, or panics after `timeout` with the object's
/// last state, so a failure explains itself.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    ready: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    let start = Instant::now();
    let mut last: Option<Result<K, String>> = None;
    while start.elapsed() < timeout {
        match api.get_opt(name).await {
            Ok(Some(obj)) if ready(&obj) => return obj,
            Ok(Some(obj)) => last = Some(Ok(obj)),
            Ok(None) => last = Some(Err("not found".into())),
            Err(e) => last = Some(Err(e.to_string())),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let state = match last {
        Some(Ok(obj)) => {
            serde_yaml::to_string(&obj).unwrap_or_else(|e| format!("<unprintable: {e}>"))
        }
        Some(Err(e)) => e,
        None => "never read".into(),
    };
    panic!("timed out after {timeout:?} waiting for {kind} {name} to {what}; last state:\n{state}");
}

/// Waits until the object is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{name} still exists after {timeout:?}");
}

/// Checks `probe` every 200 ms for `period` and panics the first time it
/// finds nothing, saying what should have held and what the probe saw: the
/// opposite of `eventually`, for "nothing happens" (no retry, no rewrite).
pub async fn consistently<T, P: Probed<T>, F: Future<Output = P>>(
    what: &str,
    period: Duration,
    probe: impl Fn() -> F,
) {
    let start = Instant::now();
    while start.elapsed() < period {
        if let Err(seen) = probe().await.found() {
            panic!(
                "after {:?} of {period:?}, no longer {what}; seen: {seen}",
                start.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
