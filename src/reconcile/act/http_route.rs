//! The user's HTTPRoute, when a canary splits its traffic through the
//! Gateway API: read once per pass (HTTPRoutes are not watched: the Gateway
//! API may not be installed, and only routed ModelDeployments pay the
//! read), and its two weights written when the plan changes them.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};

use crate::error::Error;
use crate::resources::labels::MANAGER;
use crate::resources::route::{Split, Weights};
use crate::status::Blocker;

/// The route as this pass read it.
pub struct Route {
    pub name: String,
    pub split: Split,
}

fn api(client: Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client, namespace, &ApiResource::from_gvk(&gvk))
}

/// Reads the route. What the user must fix (no such route, no splitting
/// rule, no right to read it) is a `Blocker`; nothing changes meanwhile.
pub async fn read(
    client: Client,
    namespace: &str,
    route: &str,
    model: &str,
) -> Result<Result<Route, Blocker>, Error> {
    let object = match api(client, namespace).get(route).await {
        Ok(object) => object,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Ok(Err(Blocker::invalid(format!(
                "HTTPRoute {route} (spec.rollout.canary.trafficRouting.gatewayAPI.httpRoute) \
                 does not exist in namespace {namespace}, or the Gateway API is not installed: \
                 create it with a rule whose backendRefs are the Services {model}-stable and \
                 {model}-canary (docs/canary.md)"
            ))));
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Ok(Err(Blocker::invalid(format!(
                "the operator may not read HTTPRoute {route} in namespace {namespace}: its \
                 ClusterRole needs get and patch on httproutes.gateway.networking.k8s.io \
                 (the Helm chart's gatewayAPI.enabled)"
            ))));
        }
        Err(e) => return Err(e.into()),
    };
    let json = serde_json::to_value(&object).map_err(|source| Error::Serialize {
        kind: "HTTPRoute",
        source,
    })?;
    Ok(Split::find(&json, model)
        .map(|split| Route {
            name: route.to_string(),
            split,
        })
        .map_err(Blocker::invalid))
}

/// Sets the route's weights, when they differ. A route edited since the
/// read fails the patch's name tests: nothing is written and the pass is
/// retried on a fresh read.
pub async fn set_weights(
    client: Client,
    namespace: &str,
    route: &Route,
    weights: Weights,
) -> Result<bool, Error> {
    let Some(ops) = route.split.patch(weights) else {
        return Ok(false);
    };
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|source| Error::Serialize {
            kind: "HTTPRoute patch",
            source,
        })?;
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    api(client, namespace)
        .patch(&route.name, &params, &Patch::<()>::Json(patch))
        .await?;
    Ok(true)
}
