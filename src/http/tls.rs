//! TLS for a secured `/metrics`: a reader's bearer token must not cross the
//! cluster network in clear, so secured metrics are served over HTTPS only.
//!
//! The certificate is the one mounted in `--metrics-cert-dir` (`tls.crt`,
//! `tls.key`: a `kubernetes.io/tls` Secret, e.g. from cert-manager), read
//! at start; without one, a self-signed certificate is made at start, as
//! controller-runtime does. A self-signed certificate encrypts but proves
//! nothing: Prometheus then skips verification (`insecureSkipVerify`, the
//! kubebuilder scaffold's default), which still keeps the token from
//! passive readers; mount a certificate from a CA to have it verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A client that does not finish its handshake in this time is dropped, so
/// half-open connections cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Nor may one dribble its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Names in the self-signed certificate. Nothing verifies them (a reader
/// that verifies needs a mounted certificate); they only make it a valid
/// server certificate for the local checks (`curl -k https://localhost`).
const SELF_SIGNED_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make a self-signed certificate for /metrics: {0}")]
    SelfSigned(#[from] rcgen::Error),
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the certificate and key for /metrics do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The TLS configuration: the certificate in `cert_dir`, or a self-signed
/// one.
pub fn server_config(cert_dir: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = match cert_dir {
        Some(dir) => mounted(dir)?,
        None => self_signed()?,
    };
    // ring, as everywhere else in the operator: one TLS stack compiled in.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // hyper serves HTTP/1 here; say so in ALPN, as Prometheus may offer h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names)?;
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
    Ok((vec![made.cert.der().clone()], PrivateKeyDer::Pkcs8(key)))
}

fn mounted(dir: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let unreadable = |path: &Path, reason: String| TlsError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable(&cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(unreadable(&cert, "no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| unreadable(&key, e.to_string()))?;
    Ok((chain, key))
}

/// Serves `app` over TLS on `listener` until the process ends. Each
/// connection's handshake runs in its own task, so a slow or silent
/// client never holds up the others.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, app: Router) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pass, do not spin.
                tracing::warn!(error = %e, "cannot accept a /metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                // A failed handshake is the client's business (a plain-http
                // scrape, a port scan): not worth a log line each.
                Ok(Err(_)) | Err(_) => return,
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_makes_a_configuration() {
        let config = server_config(None).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_mounted_certificate_is_read_and_a_missing_one_named() {
        let dir = std::env::temp_dir().join(format!("metrics-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["m".to_string()]).unwrap();
        std::fs::write(dir.join("tls.crt"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), made.signing_key.serialize_pem()).unwrap();
        assert!(server_config(Some(&dir)).is_ok());

        std::fs::remove_file(dir.join("tls.key")).unwrap();
        let err = server_config(Some(&dir)).unwrap_err().to_string();
        assert!(err.contains("tls.key"), "{err}");
        std::fs::write(dir.join("tls.crt"), "not PEM").unwrap();
        let err = server_config(Some(&dir)).unwrap_err().to_string();
        assert!(err.contains("tls.crt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
