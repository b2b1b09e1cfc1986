//! One reconcile pass as the controller runs it: the cached object decoded,
//! the pass measured, its errors given a per-object backoff, and what a
//! deleted object left behind dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::ModelDeployment;
use crate::cache::model::{CachedModel, ModelRef};
use crate::error::Error;
use crate::metrics::ReconcileLabels;
use crate::reconcile::{Context, reconcile};

/// Reconciles with its duration and outcome counted, and the object's
/// backoff reset once it succeeds.
pub(super) async fn measured_reconcile(
    cached: Arc<CachedModel>,
    ctx: Arc<Context>,
    backoff: Arc<Backoff>,
    store: Store<CachedModel>,
) -> Result<Action, Error> {
    let metrics = ctx.metrics.clone();
    let start = std::time::Instant::now();
    let result = match cached.decode() {
        Ok(md) => {
            let md = Arc::new(md);
            let result = contained(reconcile(md.clone(), ctx.clone())).await;
            // Deleted while this pass ran: what the pass recorded (series,
            // guard rounds) came after the deletion's cleanup, so clean up
            // again.
            if store.get(&ObjectRef::from_obj(cached.as_ref())).is_none() {
                forget(&ctx, &md);
            }
            result
        }
        Err(source) => Err(Error::Decode {
            kind: "ModelDeployment",
            source,
        }),
    };
    metrics
        .reconcile_duration
        .observe(start.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            outcome: outcome.into(),
        })
        .inc();
    if result.is_ok() {
        backoff.reset(&ObjectRef::from_obj(cached.as_ref()));
    }
    result
}

/// A pass whose panic ends that pass only: the controller polls every pass
/// in one task, so an uncaught panic (a bug) would stop every team's
/// reconciles. It becomes `Error::Panicked`, reported and retried like any
/// error.
async fn contained(
    pass: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(pass).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(Error::Panicked(message.chars().take(256).collect()))
        }
    }
}

/// Drops what is kept per ModelDeployment outside the caches: its guard
/// rounds and tokens, and its metric series.
pub(super) fn forget(ctx: &Context, md: &ModelDeployment) {
    if let (Some(namespace), Some(name)) = (
        md.metadata.namespace.as_deref(),
        md.metadata.name.as_deref(),
    ) {
        ctx.outbound.forget(namespace, name);
        ctx.snapshots.forget(namespace, name);
        ctx.metrics.forget(md);
    }
}

/// Every reconcile error is reported here, once: logged with its kind and
/// retried after the object's own backoff.
/// An object deleted while its pass ran gets no backoff entry: its
/// deletion's cleanup has already run, and nothing would remove the entry.
pub(super) fn error_policy(
    md: &CachedModel,
    error: &Error,
    backoff: &Backoff,
    store: &Store<CachedModel>,
) -> Action {
    let object = ObjectRef::from_obj(md);
    if store.get(&object).is_none() {
        tracing::info!(name = %md.meta().name.clone().unwrap_or_default(), error = %error, "reconcile of a deleted ModelDeployment failed");
        return Action::await_change();
    }
    let delay = backoff.next(&object);
    tracing::warn!(name = %md.meta().name.clone().unwrap_or_default(), error = %error, kind = error.kind(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Per-object exponential backoff for failed reconciles, so one broken object
/// neither hammers the API server nor waits a flat long time to recover.
#[derive(Default)]
pub(super) struct Backoff {
    failures: Mutex<HashMap<ModelRef, u32>>,
}

impl Backoff {
    pub(super) fn entries(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(300);

    fn next(&self, key: &ModelRef) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        Self::BASE
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(20)))
            .min(Self::MAX)
    }

    pub(super) fn reset(&self, key: &ModelRef) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_pass_is_an_error_and_the_next_pass_runs() {
        let panicked = contained(async { panic!("bug in a pass") }).await;
        assert!(
            matches!(&panicked, Err(Error::Panicked(m)) if m == "bug in a pass"),
            "{panicked:?}"
        );
        assert_eq!(panicked.unwrap_err().kind(), "panic");
        let next = contained(async { Ok(Action::await_change()) }).await;
        assert!(next.is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_a_cap_and_resets() {
        let b = Backoff::default();
        let key = ObjectRef::new("m").within("ns");
        let delays: Vec<_> = (0..12).map(|_| b.next(&key)).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[2], Duration::from_secs(2));
        assert_eq!(delays[11], Backoff::MAX);
        b.reset(&key);
        assert_eq!(b.next(&key), Duration::from_millis(500));
    }
}
