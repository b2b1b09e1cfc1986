//! `/metrics` for Prometheus, `/healthz` (the process serves) and `/readyz`
//! (every watched scope has its caches filled and reconciles).
//!
//! `/metrics` names every team's ModelDeployments, phases and analysed
//! values, so by default it is served only over TLS and only to a reader
//! the Kubernetes API server authenticates and authorises (`auth`, `tls`);
//! `--metrics-auth=none` serves it in plain HTTP to anyone who reaches the
//! address, for a loopback address in development and tests. The probes
//! stay plain HTTP without authentication: they say nothing about tenants,
//! and the kubelet has no token to send.

mod auth;
mod tls;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Who may read `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsAuth {
    /// HTTPS, and a bearer token the API server authenticates
    /// (TokenReview) for a user allowed `get` on the non-resource URL
    /// `/metrics` (SubjectAccessReview).
    Kubernetes,
    /// Plain HTTP to anyone who reaches the address.
    None,
}

/// The endpoints' flags.
#[derive(Clone, Debug, clap::Args)]
pub struct EndpointArgs {
    /// Where `/metrics` listens.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Where `/healthz` and `/readyz` listen (may equal --metrics-addr
    /// only with --metrics-auth=none: the probes are plain HTTP).
    #[arg(long, env = "HEALTH_ADDR", default_value = "127.0.0.1:8081")]
    pub health_addr: SocketAddr,
    /// Who may read `/metrics`: `kubernetes` (HTTPS; a bearer token of a
    /// user allowed `get` on the non-resource URL /metrics, checked with
    /// TokenReview and SubjectAccessReview, as controller-runtime's secure
    /// metrics) or `none` (plain HTTP to anyone who reaches the address:
    /// for a loopback address only).
    #[arg(long, env = "METRICS_AUTH", value_enum, default_value = "kubernetes")]
    pub metrics_auth: MetricsAuth,
    /// A directory holding `tls.crt` and `tls.key` (a mounted
    /// kubernetes.io/tls Secret) for the secured /metrics, read at start.
    /// Default: a self-signed certificate made at start.
    #[arg(long, env = "METRICS_CERT_DIR")]
    pub metrics_cert_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "--health-addr must differ from --metrics-addr when /metrics is secured (the probes are plain HTTP)"
    )]
    SharedSecuredAddress,
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The listeners, bound, and what they serve: built at start, so a port
/// taken or a certificate that cannot be read stops the operator at once
/// instead of leaving it running without endpoints.
pub struct Endpoints {
    metrics: Served,
    health: Option<(TcpListener, Router)>,
}

enum Served {
    Plain(TcpListener, Router),
    Tls(TcpListener, Arc<rustls::ServerConfig>, Router),
}

impl Endpoints {
    /// Binds `/metrics` and the probes (one listener when their addresses
    /// are equal and /metrics is plain). `client` reviews readers' tokens.
    pub async fn bind(
        args: &EndpointArgs,
        client: Client,
        metrics: Arc<Metrics>,
        ready: watch::Receiver<bool>,
    ) -> Result<Self, Error> {
        let secured = args.metrics_auth == MetricsAuth::Kubernetes;
        if secured && args.metrics_addr == args.health_addr {
            return Err(Error::SharedSecuredAddress);
        }
        let mut metrics_routes = Router::new()
            .route("/metrics", get(metrics_text))
            .with_state(metrics);
        if secured {
            let reviewer = Arc::new(auth::Reviewer::new(client));
            metrics_routes = metrics_routes.layer(axum::middleware::from_fn_with_state(
                reviewer,
                auth::authorize,
            ));
        }
        let health_routes = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readiness))
            .with_state(ready);
        let listener = bind(args.metrics_addr).await?;
        if !secured && args.metrics_addr == args.health_addr {
            let both = metrics_routes.merge(health_routes);
            return Ok(Self {
                metrics: Served::Plain(listener, both),
                health: None,
            });
        }
        let metrics = if secured {
            let config = tls::server_config(args.metrics_cert_dir.as_deref())?;
            Served::Tls(listener, config, metrics_routes)
        } else {
            Served::Plain(listener, metrics_routes)
        };
        let health = Some((bind(args.health_addr).await?, health_routes));
        Ok(Self { metrics, health })
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> std::io::Result<()> {
        let metrics = async move {
            match self.metrics {
                Served::Plain(listener, app) => axum::serve(listener, app).await,
                Served::Tls(listener, config, app) => {
                    tls::serve(listener, config, app).await;
                    Ok(())
                }
            }
        };
        match self.health {
            None => metrics.await,
            Some((listener, app)) => {
                tokio::try_join!(metrics, axum::serve(listener, app).into_future())?;
                Ok(())
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> String {
    metrics.encode()
}

async fn readiness(State(ready): State<watch::Receiver<bool>>) -> (StatusCode, &'static str) {
    if *ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}
