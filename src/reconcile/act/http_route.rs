//! The user's HTTPRoute, when a canary splits its traffic through the
//! Gateway API: read once per pass (HTTPRoutes are not watched: the Gateway
//! API may not be installed, and only routed ModelDeployments pay the
//! read), and its two weights written when the plan changes them.
//!
//! The route is someone else's object: it is written only when it opts in
//! (the `mlops.dev/model-deployment` label names this ModelDeployment) and
//! both Services it splits between are this ModelDeployment's own. Else
//! the route is left untouched and the ModelDeployment says what to fix
//! (`NameConflict`): a route pointing at another team's Services must never
//! have its traffic moved by us.

use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::super::context::Context;
use crate::api::ModelDeployment;
use crate::cache::cached;
use crate::error::Error;
use crate::reasons;
use crate::resources::labels::{MANAGER, ROUTE_OPT_IN};
use crate::resources::owned_by;
use crate::resources::route::{Split, Weights, canary_service_name, stable_service_name};
use crate::status::Blocker;

/// The route as this pass read it.
pub struct Route {
    pub name: String,
    pub split: Split,
    /// Both split Services exist and are this ModelDeployment's: the route
    /// may be written before this pass applies them.
    pub backends_ours: bool,
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
    let split = match Split::find(&json, model) {
        Ok(split) => split,
        Err(cause) => return Ok(Err(Blocker::invalid(cause))),
    };
    if object.labels().get(ROUTE_OPT_IN).map(String::as_str) != Some(model) {
        return Ok(Err(Blocker {
            reason: reasons::NAME_CONFLICT,
            message: format!(
                "HTTPRoute {route} does not opt in to weights set by ModelDeployment {model}:                  label it {ROUTE_OPT_IN}={model} (docs/canary.md); until then it is left untouched"
            ),
        }));
    }
    Ok(Ok(Route {
        name: route.to_string(),
        split,
        backends_ours: false,
    }))
}

/// Checks the Services the route splits between, before anything writes
/// the route: one that exists and is not this ModelDeployment's (another
/// team's, or one that merely copies our labels) blocks every write.
pub async fn check_backends(
    mut route: Route,
    md: &ModelDeployment,
    namespace: &str,
    ctx: &Context,
) -> Result<Result<Route, Blocker>, Error> {
    let api = Api::<Service>::namespaced(ctx.client.clone(), namespace);
    let mut ours = 0;
    let model = md.name_any();
    for name in [stable_service_name(&model), canary_service_name(&model)] {
        // Ours are in the cache; a foreign one without our labels is not.
        let cached_owner =
            cached(&ctx.stores.services, namespace, &name).map(|s| owned_by(s.as_ref(), md));
        let owned = match cached_owner {
            Some(owned) => Some(owned),
            None => api.get_opt(&name).await?.map(|s| owned_by(&s, md)),
        };
        match owned {
            Some(true) => ours += 1,
            Some(false) => {
                return Ok(Err(Blocker {
                    reason: reasons::NAME_CONFLICT,
                    message: format!(
                        "Service {name}, a backend of HTTPRoute {}, is not this                          ModelDeployment's (it lacks its controller owner reference): delete or                          rename it; until then the route is left untouched",
                        route.name
                    ),
                }));
            }
            None => {}
        }
    }
    route.backends_ours = ours == 2;
    Ok(Ok(route))
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
