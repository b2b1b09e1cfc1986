//! One test's world: a fresh namespace, typed APIs into it, the operator
//! replicas watching it (each with known metrics and health addresses), and,
//! for metric gates, an exporter the real Prometheus scrapes.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use model_operator::api::ModelDeployment;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Leader election flags shorter than the defaults (15s/10s/2s) so a
/// takeover after a kill fits the tests' patience; the same proportions.
pub const LEASE_TIMING: [&str; 6] = [
    "--lease-duration",
    "10s",
    "--renew-deadline",
    "6s",
    "--retry-period",
    "2s",
];

pub struct Setup {
    pub client: Client,
    pub ns: TestNamespace,
    pub mds: Api<ModelDeployment>,
    pub deployments: Api<Deployment>,
    pub services: Api<Service>,
    pub hpas: Api<HorizontalPodAutoscaler>,
    /// The operator processes watching the namespace: one unless
    /// `Builder::replicas` asked for more.
    pub operators: Vec<Operator>,
    /// A Prometheus scrape target whose exposition text the test sets
    /// (`Builder::exporter`).
    pub exporter: Option<Exporter>,
    _target: Option<ScrapeTarget>,
}

/// What a test needs besides the namespace.
pub struct Builder {
    prefix: String,
    args: Vec<String>,
    replicas: usize,
    exporter: bool,
}

impl Builder {
    /// Extra flags for every operator replica.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `n` replicas (leader election), named `a`, `b`, ...
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// A test exporter scraped by the local Prometheus.
    pub fn exporter(mut self) -> Self {
        self.exporter = true;
        self
    }

    pub async fn start(self) -> Setup {
        let client = client().await;
        ensure_crd(&client).await;
        let ns = TestNamespace::new(&client, &self.prefix).await;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let operators = match self.replicas {
            1 => vec![Operator::start_with(&ns.name, &args)],
            n => (0..n)
                .map(|i| {
                    let name = char::from(b'a' + i as u8).to_string();
                    Operator::start_replica(&ns.name, &name, &args)
                })
                .collect(),
        };
        let (exporter, target) = if self.exporter {
            let exporter = Exporter::start("").await;
            let target =
                ScrapeTarget::add(&format!("exporter-{}", ns.name), exporter.port, json!({}));
            (Some(exporter), Some(target))
        } else {
            (None, None)
        };
        Setup {
            mds: Api::namespaced(client.clone(), &ns.name),
            deployments: Api::namespaced(client.clone(), &ns.name),
            services: Api::namespaced(client.clone(), &ns.name),
            hpas: Api::namespaced(client.clone(), &ns.name),
            client,
            ns,
            operators,
            exporter,
            _target: target,
        }
    }
}

impl Setup {
    /// A namespace named after `prefix` with one operator watching it.
    pub async fn new(prefix: &str) -> Self {
        Self::builder(prefix).start().await
    }

    pub fn builder(prefix: &str) -> Builder {
        Builder {
            prefix: prefix.to_string(),
            args: Vec::new(),
            replicas: 1,
            exporter: false,
        }
    }

    pub async fn create_md(&self, md: &ModelDeployment) -> ModelDeployment {
        self.mds
            .create(&PostParams::default(), md)
            .await
            .expect("create ModelDeployment")
    }

    /// Creates the test's main ModelDeployment, `m`, with this spec.
    pub async fn create(&self, spec: Value) -> ModelDeployment {
        self.create_named("m", spec).await
    }

    /// Creates ModelDeployment `name` with this spec.
    pub async fn create_named(&self, name: &str, spec: Value) -> ModelDeployment {
        self.create_md(&model(name, spec)).await
    }

    /// A new model version for `m`.
    pub async fn set_version(&self, version: &str) {
        self.set_version_of("m", version).await;
    }

    /// A new model version for ModelDeployment `name`.
    pub async fn set_version_of(&self, name: &str, version: &str) {
        self.patch_spec(name, json!({"model": {"version": version}}))
            .await;
    }

    /// Waits until the status of `m` describes its latest spec and `ok`
    /// holds; the failure shows the last state.
    pub async fn wait(&self, what: &str, ok: impl Fn(&ModelDeployment) -> bool) -> ModelDeployment {
        self.wait_named("m", what, ok).await
    }

    /// `wait` for ModelDeployment `name`.
    pub async fn wait_named(
        &self,
        name: &str,
        what: &str,
        ok: impl Fn(&ModelDeployment) -> bool,
    ) -> ModelDeployment {
        wait_for(&self.mds, name, what, TIMEOUT, |m| settled(m) && ok(m)).await
    }

    /// Merges `spec` into the spec of ModelDeployment `name`.
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.mds
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch spec");
    }

    /// `patch_spec` of the test's main ModelDeployment, `m`.
    pub async fn set(&self, spec: Value) {
        self.patch_spec("m", spec).await;
    }

    /// Waits until the Deployment `m` runs revision `revision`.
    pub async fn wait_template(&self, revision: i64) -> Deployment {
        wait_for(
            &self.deployments,
            "m",
            &format!("run revision {revision}"),
            TIMEOUT,
            |d| model_operator::resources::revision_of(d) == Some(revision),
        )
        .await
    }

    /// Waits until a Warning Event about object `regarding` has `reason`
    /// and a note containing `note`; (reason, note) of it.
    pub async fn warning_event(
        &self,
        regarding: &str,
        reason: &str,
        note: &str,
    ) -> (String, String) {
        warning_event(
            &self.client,
            &self.ns.name,
            regarding,
            reason,
            note,
            TIMEOUT,
        )
        .await
    }

    /// Every Event in the namespace: (reason, note).
    /// The live (not terminating) pods of `revision`.
    pub async fn live_pods(&self, revision: i64) -> Vec<k8s_openapi::api::core::v1::Pod> {
        kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(self.client.clone(), &self.ns.name)
            .list(
                &kube::api::ListParams::default().labels(&format!("mlops.dev/revision={revision}")),
            )
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    pub async fn events(&self) -> Vec<(String, String)> {
        Api::<Event>::namespaced(self.client.clone(), &self.ns.name)
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }
}
