//! The operator's Kubernetes client, with every request it sends counted by
//! verb and resource (`model_operator_api_requests_total`), so "a converged
//! operator makes no request" and "it backs off while the API server is
//! down" can be read from `/metrics` instead of believed.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::Request;
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::{ApiRequestLabels, Metrics};

/// A client from the kubeconfig (`$KUBECONFIG`, current context) or the
/// in-cluster configuration, counting its requests into `metrics`.
pub async fn counted(metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&CountLayer {
            requests: metrics.api_requests.clone(),
        })
        .build())
}

/// Counts each request when it is sent, before the answer: a request that
/// never reaches a stopped API server is an attempt all the same.
#[derive(Clone)]
pub struct CountLayer {
    pub requests: Family<ApiRequestLabels, Counter>,
}

impl<S> Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            requests: self.requests.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Count<S> {
    inner: S,
    requests: Family<ApiRequestLabels, Counter>,
}

impl<S> Service<Request<Body>> for Count<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> S::Future {
        let (verb, resource) = classify(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        self.requests
            .get_or_create(&ApiRequestLabels {
                verb: verb.into(),
                resource,
            })
            .inc();
        self.inner.call(request)
    }
}

/// The Kubernetes verb and resource (plural, with `/subresource`) of a
/// request, from its method and path as the API server would authorize it.
fn classify(method: &http::Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // `/api/v1/…` (core) or `/apis/GROUP/VERSION/…`; anything else (discovery
    // of `/apis`, `/version`) is a non-resource request.
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    // `namespaces/NS/RESOURCE…` is namespaced; `namespaces` and
    // `namespaces/NS` are the Namespace resource itself.
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [] => {
            return (
                non_resource_verb(method),
                segments.first().copied().unwrap_or("").to_string(),
            );
        }
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let watching =
        query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match (method.as_str(), named) {
        ("GET", _) if watching => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "other",
    };
    (verb, resource)
}

fn non_resource_verb(method: &http::Method) -> &'static str {
    if method == http::Method::GET {
        "get"
    } else {
        "other"
    }
}

/// Verbs that change something in the cluster.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn verbs_and_resources_as_the_api_server_sees_them() {
        let cases = [
            (
                Method::GET,
                "/apis/mlops.dev/v1alpha1/namespaces/ml/modeldeployments",
                Some("watch=true&resourceVersion=5"),
                ("watch", "modeldeployments"),
            ),
            (
                Method::GET,
                "/apis/mlops.dev/v1alpha1/namespaces/ml/modeldeployments",
                Some("limit=1"),
                ("list", "modeldeployments"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/deployments",
                Some("labelSelector=x"),
                ("list", "deployments"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ml/pods/p1",
                None,
                ("get", "pods"),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/ml/deployments/fraud",
                Some("fieldManager=model-operator"),
                ("patch", "deployments"),
            ),
            (
                Method::PATCH,
                "/apis/mlops.dev/v1alpha1/namespaces/ml/modeldeployments/fraud/status",
                None,
                ("patch", "modeldeployments/status"),
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/ml/events",
                None,
                ("create", "events"),
            ),
            (
                Method::DELETE,
                "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/fraud",
                None,
                ("delete", "horizontalpodautoscalers"),
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/ml/controllerrevisions",
                None,
                ("deletecollection", "controllerrevisions"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ml",
                None,
                ("get", "namespaces"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                None,
                ("list", "namespaces"),
            ),
            (Method::GET, "/version", None, ("get", "version")),
        ];
        for (method, path, query, (verb, resource)) in cases {
            assert_eq!(
                classify(&method, path, query),
                (verb, resource.to_string()),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn writes_are_the_changing_verbs() {
        assert!(is_write("patch") && is_write("create") && is_write("delete"));
        assert!(!is_write("watch") && !is_write("list") && !is_write("get"));
    }
}
