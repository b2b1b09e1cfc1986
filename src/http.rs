//! `/metrics` for Prometheus, `/healthz` (the process serves) and `/readyz`
//! (every watched scope has its caches filled and reconciles).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Serves `/metrics` on `metrics_addr` and the probes on `health_addr` (the
/// same listener when they are equal) until the process ends.
pub async fn serve(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let metrics_routes = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    let health_routes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .with_state(ready);
    if metrics_addr == health_addr {
        let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
        return axum::serve(listener, metrics_routes.merge(health_routes)).await;
    }
    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr).await?;
    let health_listener = tokio::net::TcpListener::bind(health_addr).await?;
    tokio::try_join!(
        axum::serve(metrics_listener, metrics_routes).into_future(),
        axum::serve(health_listener, health_routes).into_future(),
    )?;
    Ok(())
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
