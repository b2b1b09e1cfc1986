//! The ModelDeployment watch, decoded one object at a time. A typed watch
//! fails as a whole when one object does not decode (a value a newer CRD
//! allows, a number an older API server stored): the initial list errors
//! and, at start, the operator stops for every team. Here the watch
//! receives untyped objects and decodes each on its own; one that does not
//! decode is reported (a log line, `model_operator_undecodable_objects`,
//! a Warning Event on it) once per version and skipped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::events::Reporter as EventReporter;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

use crate::api::ModelDeployment;
use crate::cache::model::CachedModel;
use crate::metrics::Metrics;
use crate::reconcile::events::{self, Announcement};

/// Why an object was skipped, as much as is useful in a log or an Event
/// (serde names the field and the value; the rest would be noise).
const REASON_LIMIT: usize = 256;

/// Called with each ModelDeployment the watch sees deleted.
pub(super) type OnDelete = Box<dyn Fn(&ModelDeployment) + Send + Sync>;

/// Reports each undecodable version once, and passes deletions on.
pub(super) struct Reporter {
    client: Client,
    reporter: EventReporter,
    metrics: Arc<Metrics>,
    on_delete: OnDelete,
    /// (uid, resourceVersion) already reported; forgotten on delete.
    reported: Mutex<HashSet<(String, String)>>,
}

impl Reporter {
    /// Undecodable versions remembered (until their object is deleted).
    pub fn entries(&self) -> usize {
        self.reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn new(
        client: Client,
        reporter: EventReporter,
        metrics: Arc<Metrics>,
        on_delete: OnDelete,
    ) -> Self {
        Self {
            client,
            reporter,
            metrics,
            on_delete,
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// A ModelDeployment the cache no longer holds: what is kept for it
    /// goes. Called after the cache dropped it, never before: a pass that
    /// records state after this call then sees it gone from the cache and
    /// cleans up again (`pass::measured_reconcile`), so nothing it records
    /// outlives the object.
    pub fn deleted(&self, cached: &CachedModel) {
        match cached.decode() {
            Ok(md) => (self.on_delete)(&md),
            Err(error) => {
                tracing::error!(name = ?cached.metadata.name, %error, "cannot read a deleted ModelDeployment back");
            }
        }
    }

    fn report(&self, object: &DynamicObject, error: &serde_json::Error) {
        let meta = &object.metadata;
        let key = (
            meta.uid.clone().unwrap_or_default(),
            meta.resource_version.clone().unwrap_or_default(),
        );
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        if !first {
            return;
        }
        let why: String = error.to_string().chars().take(REASON_LIMIT).collect();
        self.metrics.undecodable.inc();
        tracing::error!(
            namespace = meta.namespace.as_deref().unwrap_or(""),
            name = meta.name.as_deref().unwrap_or(""),
            error = why.as_str(),
            "skipping a ModelDeployment this operator cannot decode"
        );
        let regarding = ObjectReference {
            api_version: Some(ModelDeployment::api_version(&()).into_owned()),
            kind: Some(ModelDeployment::kind(&()).into_owned()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ..Default::default()
        };
        let warning = Announcement::warning(
            crate::reasons::UNDECODABLE,
            "Decode",
            format!(
                "this operator version cannot read the object and skips it (a newer operator or CRD may have written it): {why}"
            ),
        );
        let (client, reporter) = (self.client.clone(), self.reporter.clone());
        tokio::spawn(async move {
            events::publish(&client, &reporter, &regarding, vec![warning]).await;
        });
    }

    fn forget(&self, object: &DynamicObject) {
        let uid = object.metadata.uid.clone().unwrap_or_default();
        self.reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(u, _)| *u != uid);
    }
}

/// Watches ModelDeployments (in `namespace`, or everywhere) as untyped
/// objects and yields those that decode.
pub(super) fn watch(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
    reporter: Arc<Reporter>,
) -> impl Stream<Item = Result<watcher::Event<ModelDeployment>, watcher::Error>> + Send + 'static {
    let resource = ApiResource::erase::<ModelDeployment>(&());
    let api = match namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource),
        None => Api::<DynamicObject>::all_with(client.clone(), &resource),
    };
    watcher(api, config)
        .try_filter_map(move |event| std::future::ready(Ok(decode_event(event, &reporter))))
}

/// The event with its object decoded; `None` when it does not decode.
fn decode_event(
    event: watcher::Event<DynamicObject>,
    reporter: &Reporter,
) -> Option<watcher::Event<ModelDeployment>> {
    use watcher::Event as E;
    let decode = |object: DynamicObject| match decode(&object) {
        Ok(md) => Some(md),
        Err(e) => {
            reporter.report(&object, &e);
            None
        }
    };
    match event {
        E::Init => Some(E::Init),
        E::InitDone => Some(E::InitDone),
        E::InitApply(o) => decode(o).map(E::InitApply),
        E::Apply(o) => decode(o).map(E::Apply),
        // A deleted object that does not decode: nothing of it can be
        // reconciled; any earlier, decodable version stays cached until the
        // next relist (documented in docs/security.md). What is kept for a
        // deleted one is dropped once the cache has let it go (`deleted`).
        E::Delete(o) => {
            reporter.forget(&o);
            decode(o).map(E::Delete)
        }
    }
}

fn decode(object: &DynamicObject) -> Result<ModelDeployment, serde_json::Error> {
    let mut value = serde_json::to_value(object)?;
    // The watch of a typed API fills these in; an untyped one keeps what the
    // server sent, which for list items may lack them.
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| ModelDeployment::api_version(&()).into_owned().into());
        map.entry("kind")
            .or_insert_with(|| ModelDeployment::kind(&()).into_owned().into());
    }
    serde_json::from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn objects_decode_one_by_one() {
        let good = object(serde_json::json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"model": {"version": "1"}, "server": {"image": "i"}},
        }));
        assert_eq!(decode(&good).unwrap().metadata.name.as_deref(), Some("a"));
        let bad = object(serde_json::json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "b", "namespace": "ns"},
            "spec": {"model": {"version": "1"}, "server": {"image": "i"}, "replicas": 4_294_967_296_i64},
        }));
        assert!(decode(&bad).is_err());
        // An unknown status value is not a reason to skip (api::tolerant).
        let newer = object(serde_json::json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"model": {"version": "1"}, "server": {"image": "i"}},
            "status": {"phase": "Suspended"},
        }));
        assert!(decode(&newer).is_ok());
    }
}
