//! Reading one key of a Secret by name: the operator may `get` Secrets but
//! never list or watch them, and never logs what they hold.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::api::SecretKeyRef;

/// The key's value, trimmed (a trailing newline from `kubectl create secret
/// --from-file` is not part of a URL or token). Errors name the Secret and
/// key, never the value.
pub async fn read_key(
    client: &Client,
    namespace: &str,
    secret: &SecretKeyRef,
) -> Result<String, String> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let found = api
        .get(&secret.name)
        .await
        .map_err(|e| format!("reading Secret {}: {e}", secret.name))?;
    let bytes = found
        .data
        .as_ref()
        .and_then(|d| d.get(&secret.key))
        .ok_or_else(|| format!("Secret {} has no key {}", secret.name, secret.key))?;
    String::from_utf8(bytes.0.clone())
        .map(|s| s.trim().to_string())
        .map_err(|_| format!("Secret {} key {} is not UTF-8", secret.name, secret.key))
}
