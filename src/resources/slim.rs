//! Kubernetes identity for the operator's slim cache types (a pod, a
//! Deployment decoded only as far as the operator reads it), so kube's
//! watcher and reflector treat them as the kind they stand for.

/// `slim_resource!(Type, "apps/v1", "apps", "Deployment", "v1", "deployments")`:
/// a namespaced kind whose metadata is the `metadata` field.
macro_rules! slim_resource {
    ($ty:ty, $api_version:literal, $group:literal, $kind:literal, $version:literal, $plural:literal) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = $api_version;
            const GROUP: &'static str = $group;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use slim_resource;
