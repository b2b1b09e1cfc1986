use std::process::ExitCode;

use clap::{Parser, Subcommand};
use model_operator::controller::{self, InitialList, Settings};
use model_operator::http::{EndpointArgs, Endpoints};

use model_operator::leader::{self, Election, ElectionArgs};
use model_operator::outbound::egress::Policy;
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
        /// URL prefixes ModelDeployments may send metric queries and alerts
        /// to (repeat the flag, or comma-separate in the env var), e.g.
        /// `http://prometheus.monitoring:9090`. Empty: any address, which
        /// lets anyone who can create a ModelDeployment make the operator
        /// send requests from its network position; unsafe in a shared
        /// cluster (docs/security.md).
        #[arg(
            long = "allowed-endpoint",
            env = "ALLOWED_ENDPOINTS",
            value_delimiter = ','
        )]
        allowed_endpoints: Vec<String>,
        /// Send bearer tokens to plain-http Prometheus addresses too (by
        /// default they go over https only).
        #[arg(long, env = "ALLOW_INSECURE_TOKENS")]
        allow_insecure_tokens: bool,
        /// Metric rounds (Prometheus queries) that may run at once. They run
        /// off the reconcile workers, each until its answers or timeouts
        /// are in.
        #[arg(long, env = "ANALYSIS_POOL", default_value_t = 8)]
        analysis_pool: usize,
        /// Of those, at most this many for one namespace, so one team's
        /// hanging Prometheus delays only that team's analysis.
        #[arg(long, env = "ANALYSIS_PER_NAMESPACE", default_value_t = 2)]
        analysis_per_namespace: usize,
        #[command(flatten)]
        election: Box<ElectionArgs>,
    },
    /// Print the ModelDeployment CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    match Cli::parse().command {
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
            allowed_endpoints,
            allow_insecure_tokens,
            analysis_pool,
            analysis_per_namespace,
            election,
        } => {
            telemetry::init(log_format);
            let egress = match Policy::new(&allowed_endpoints, allow_insecure_tokens) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "invalid flags");
                    return ExitCode::FAILURE;
                }
            };
            if egress.allows_any() {
                tracing::warn!(
                    "no --allowed-endpoint: ModelDeployments may send metric queries and alerts to any address (unsafe in a shared cluster; see docs/security.md)"
                );
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
