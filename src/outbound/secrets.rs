//! Reading one key of a Secret by name: the operator may `get` Secrets but
//! never list or watch them, and never logs what they hold. A Secret is
//! read only when its owner opted in with the `mlops.dev/secret-type`
//! label for that purpose (as Argo CD does with its secret-type label):
//! without it, naming another team's Secret (or the namespace's
//! ServiceAccount token) in a ModelDeployment sends nothing anywhere.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::api::SecretKeyRef;

/// The opt-in label's key.
pub const SECRET_TYPE_LABEL: &str = "mlops.dev/secret-type";

/// What a Secret may be read for: the opt-in label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `spec.rollout.analysis.prometheus.bearerTokenSecretRef`.
    PrometheusToken,
    /// `spec.alerts.webhook.urlSecretRef`.
    AlertWebhook,
}

impl Purpose {
    pub fn label_value(self) -> &'static str {
        match self {
            Purpose::PrometheusToken => "prometheus-token",
            Purpose::AlertWebhook => "alert-webhook",
        }
    }
}

/// The key's value, trimmed (a trailing newline from `kubectl create secret
/// --from-file` is not part of a URL or token). Errors name the Secret, key
/// and missing label, never the value.
pub async fn read_key(
    client: &Client,
    namespace: &str,
    secret: &SecretKeyRef,
    purpose: Purpose,
) -> Result<String, String> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let found = api
        .get(&secret.name)
        .await
        .map_err(|e| read_error(namespace, &secret.name, &e))?;
    value_of(&found, secret, purpose)
}

/// Why a Secret could not be read. A 403 is the admin's choice (the
/// chart's `secretNamespaces` leaves this namespace out), not a fault: say
/// so, instead of the API server's wording.
fn read_error(namespace: &str, name: &str, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "the operator may not read Secrets in namespace {namespace} (Secret {name}): the admin limits Secret reads to some namespaces (Helm value secretNamespaces)"
        ),
        other => format!("reading Secret {name}: {other}"),
    }
}

/// The key's value, when the Secret opted in for `purpose`.
fn value_of(found: &Secret, secret: &SecretKeyRef, purpose: Purpose) -> Result<String, String> {
    let wanted = purpose.label_value();
    if found.labels().get(SECRET_TYPE_LABEL).map(String::as_str) != Some(wanted) {
        return Err(format!(
            "Secret {} lacks the label {SECRET_TYPE_LABEL}={wanted}; the operator reads only Secrets labelled for it",
            secret.name
        ));
    }
    let bytes = found
        .data
        .as_ref()
        .and_then(|d| d.get(&secret.key))
        .ok_or_else(|| format!("Secret {} has no key {}", secret.name, secret.key))?;
    String::from_utf8(bytes.0.clone())
        .map(|s| s.trim().to_string())
        .map_err(|_| format!("Secret {} key {} is not UTF-8", secret.name, secret.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(label: Option<&str>) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "labels": label.map(|l| serde_json::json!({SECRET_TYPE_LABEL: l}))},
            "data": {"k": "dG9rZW4K"},
        }))
        .unwrap()
    }

    #[test]
    fn a_forbidden_read_names_the_namespace_and_the_setting() {
        let status = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure("refused", "Forbidden")
                    .with_code(code)
                    .boxed(),
            )
        };
        let forbidden = read_error("team-b", "token", &status(403));
        assert!(
            forbidden.contains("namespace team-b") && forbidden.contains("secretNamespaces"),
            "{forbidden}"
        );
        let missing = read_error("team-b", "token", &status(404));
        assert!(missing.starts_with("reading Secret token: "), "{missing}");
    }

    #[test]
    fn only_secrets_labelled_for_the_purpose_are_read() {
        let reference = SecretKeyRef {
            name: "s".into(),
            key: "k".into(),
        };
        let token = Purpose::PrometheusToken;
        assert_eq!(
            value_of(&secret(Some("prometheus-token")), &reference, token),
            Ok("token".into())
        );
        for label in [None, Some("alert-webhook"), Some("true")] {
            let err = value_of(&secret(label), &reference, token).unwrap_err();
            assert!(
                err.contains("lacks the label mlops.dev/secret-type=prometheus-token"),
                "{err}"
            );
        }
        assert!(
            value_of(
                &secret(Some("alert-webhook")),
                &reference,
                Purpose::AlertWebhook
            )
            .is_ok()
        );
    }
}
