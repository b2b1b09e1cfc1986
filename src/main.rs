use std::process::ExitCode;

use clap::{Parser, Subcommand};
use model_operator::controller::{self, InitialList, Settings};
use model_operator::http::{EndpointArgs, Endpoints};

use model_operator::leader::{self, Election, ElectionArgs};
use model_operator::outbound::policy::{self, Policy};
use model_operator::telemetry::{self, LogFormat};

/// Runs machine-learning models in production safely.
#[derive(Parser)]
#[command(version = model_operator::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (kubeconfig or in-cluster configuration).
    Run {
        /// Log line format.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
        /// ModelDeployments reconciled at once.
        #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
        concurrency: u16,
        /// Watch only these namespaces (repeat the flag, or comma-separate in
        /// the env var). Default: the whole cluster.
        #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
        namespaces: Vec<String>,
        #[command(flatten)]
        endpoints: EndpointArgs,
        /// How the caches are first filled: `stream` (streaming lists: no
        /// whole LIST answer in memory at start), `list`, or `auto`
        /// (streaming where the API server has it on by default).
        #[arg(long, env = "INITIAL_LIST", value_enum, default_value = "auto")]
        initial_list: InitialList,
        #[command(flatten)]
        outbound: Box<OutboundArgs>,
        /// Metric rounds (Prometheus queries) that may run at once. They run
        /// off the reconcile workers, each until its answers or timeouts
        /// are in.
        #[arg(long, env = "ANALYSIS_POOL", default_value_t = 8)]
        analysis_pool: usize,
        /// Of those, at most this many for one namespace, so one team's
        /// hanging Prometheus delays only that team's analysis.
        #[arg(long, env = "ANALYSIS_PER_NAMESPACE", default_value_t = 2)]
        analysis_per_namespace: usize,
        /// Queries in flight at once to one endpoint (scheme, host and
        /// port), whatever the rounds and namespaces they come from, so the
        /// operator never fires a whole pool of rounds at one shared
        /// Prometheus; the others wait their turn.
        #[arg(long, env = "ANALYSIS_PER_ENDPOINT", default_value_t = 16)]
        analysis_per_endpoint: usize,
        /// Image of the init container that downloads a model for
        /// `model.storage` (s3://, gs://, hf://, https://), e.g. KServe's
        /// storage initializer; it is run as `<image> <uri> <mountPath>`.
        /// Empty: such a spec is refused with `InvalidSpec`; `pvc://`
        /// needs none.
        #[arg(long, env = "MODEL_FETCH_IMAGE")]
        model_fetch_image: Option<String>,
        #[command(flatten)]
        election: Box<ElectionArgs>,
    },
    /// Print the ModelDeployment CustomResourceDefinition as YAML.
    Crd,
    /// Print the JSON Schema of a `format: Generic` webhook notification.
    NotificationSchema,
}

/// Where outbound requests may go, per purpose (docs/security.md).
#[derive(clap::Args)]
struct OutboundArgs {
    /// URL prefixes of the Prometheus servers ModelDeployments may query
    /// (repeat the flag, or comma-separate in the env var), e.g.
    /// `http://prometheus.monitoring:9090`. The operator only ever sends
    /// `POST <address>/api/v1/query`, and that final URL must lie under
    /// one of them. Empty: no queries at all (docs/security.md).
    #[arg(
        long = "allowed-prometheus",
        env = "ALLOWED_PROMETHEUS",
        value_delimiter = ','
    )]
    allowed_prometheus: Vec<String>,
    /// URL prefixes of the Alertmanagers ModelDeployments may send alerts
    /// to; only `POST <url>/api/v2/alerts`, under one of them. Empty: none.
    #[arg(
        long = "allowed-alertmanager",
        env = "ALLOWED_ALERTMANAGER",
        value_delimiter = ','
    )]
    allowed_alertmanager: Vec<String>,
    /// URL prefixes webhook URLs (from Secrets) must lie under. Kept
    /// apart from the other two: a webhook is a POST to any path, so a
    /// Prometheus prefix here would open its admin endpoints. Empty: none.
    #[arg(
        long = "allowed-webhook",
        env = "ALLOWED_WEBHOOKS",
        value_delimiter = ','
    )]
    allowed_webhooks: Vec<String>,
    /// Deprecated: prefixes allowed for Prometheus and Alertmanager
    /// (never for webhooks); use the three flags above.
    #[arg(
        long = "allowed-endpoint",
        env = "ALLOWED_ENDPOINTS",
        value_delimiter = ','
    )]
    allowed_endpoints: Vec<String>,
    /// Any address for every purpose (still only the query and alerts
    /// endpoints of Prometheus and Alertmanager): for a single-team
    /// cluster or a local run; unsafe in a shared cluster, warned about
    /// at start.
    #[arg(long = "allow-any-endpoint", env = "ALLOW_ANY_ENDPOINT")]
    allow_any_endpoint: bool,
    /// Send bearer tokens to plain-http Prometheus addresses too (by
    /// default they go over https only).
    #[arg(long, env = "ALLOW_INSECURE_TOKENS")]
    allow_insecure_tokens: bool,
    /// Rewrite every query so each of its selectors sees only the
    /// ModelDeployment's namespace (`namespace="<ns>"`, replacing any
    /// namespace matcher written); a query that does not parse is not sent.
    #[arg(long, env = "SCOPE_QUERIES_TO_NAMESPACE")]
    scope_queries_to_namespace: bool,
}

impl OutboundArgs {
    fn settings(self) -> policy::Settings {
        policy::Settings {
            prometheus: self.allowed_prometheus,
            alertmanager: self.allowed_alertmanager,
            webhook: self.allowed_webhooks,
            legacy: self.allowed_endpoints,
            allow_any: self.allow_any_endpoint,
            insecure_tokens: self.allow_insecure_tokens,
            scope_queries: self.scope_queries_to_namespace,
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::NotificationSchema => {
            print!("{}", model_operator::alerts::messages::generic_schema());
            ExitCode::SUCCESS
        }
        Command::Crd => match model_operator::api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            log_format,
            concurrency,
            namespaces,
            endpoints,
            initial_list,
            outbound,
            analysis_pool,
            analysis_per_namespace,
            analysis_per_endpoint,
            model_fetch_image,
            election,
        } => {
            telemetry::init(log_format);
            let outbound = outbound.settings();
            let egress = match Policy::new(&outbound) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "invalid flags");
                    return ExitCode::FAILURE;
                }
            };
            for warning in policy::warnings(&outbound) {
                tracing::warn!("{warning}");
            }
            let election = match Election::from_args(*election) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "invalid flags");
                    return ExitCode::FAILURE;
                }
            };
            let (ready, ready_rx) = tokio::sync::watch::channel(false);
            let settings = Settings {
                concurrency,
                namespaces,
                metrics: Default::default(),
                ready,
                initial_list,
                egress: std::sync::Arc::new(egress),
                rounds: model_operator::outbound::rounds::Limits {
                    pool: analysis_pool,
                    per_namespace: analysis_per_namespace,
                    per_endpoint: analysis_per_endpoint,
                },
                platform: model_operator::resources::Platform {
                    fetch_image: model_fetch_image.filter(|image| !image.is_empty()),
                },
            };
            run(settings, election, endpoints, ready_rx)
        }
    }
}

fn run(
    settings: Settings,
    election: Option<Election>,
    endpoints: EndpointArgs,
    ready: tokio::sync::watch::Receiver<bool>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match model_operator::client::counted(settings.metrics.clone()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no Kubernetes configuration (kubeconfig or in-cluster)");
                return ExitCode::FAILURE;
            }
        };
        let endpoints =
            match Endpoints::bind(&endpoints, client.clone(), settings.metrics.clone(), ready).await {
                Ok(endpoints) => endpoints,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve the metrics and health endpoints");
                    return ExitCode::FAILURE;
                }
            };
        let endpoints = tokio::spawn(async move {
            if let Err(e) = endpoints.serve().await {
                tracing::error!(error = %e, "metrics and health endpoints stopped");
            }
        });
        let result = match election {
            Some(election) => {
                let status = leader::Status {
                    metrics: settings.metrics.clone(),
                    ready: settings.ready.clone(),
                };
                leader::run(client, election, status, |client| {
                    controller::run(client, settings)
                })
                .await
            }
            None => {
                settings.metrics.leader.set(1);
                controller::run(client, settings).await.map_err(Into::into)
            }
        };
        endpoints.abort();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "operator stopped");
                ExitCode::FAILURE
            }
        }
    })
}
