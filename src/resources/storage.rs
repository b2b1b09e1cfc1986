//! The model's weights in the pod (`spec.model.storage`): a `pvc://` claim
//! mounted read-only, or a download by the platform's storage initializer
//! into an emptyDir or a cache claim, before the server starts.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvFromSource, PersistentVolumeClaimVolumeSource,
    SecretEnvSource, Volume, VolumeMount,
};

use super::security::container_security;
use crate::api::ServedVersion;

/// What the platform's admin set for every model pod (chart values).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Platform {
    /// Image of the container that downloads a model before the server
    /// starts (KServe's storage-initializer); none: `model.storage` with a
    /// download scheme is refused with a condition.
    pub fetch_image: Option<String>,
}

/// The operator's model volume.
pub const MODEL_VOLUME: &str = "mlops-model";
/// The init container that downloads the model.
pub const FETCH_CONTAINER: &str = "mlops-model-fetch";
/// Where the model is, unless `model.storage.mountPath` says otherwise
/// (KServe's convention, which its storage initializer and many server
/// images expect).
pub const DEFAULT_MOUNT_PATH: &str = "/mnt/models";

/// The volume, its mount in the model container, the download (if any)
/// and the `MODEL_PATH` the server is given.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelVolume {
    pub volume: Volume,
    pub mount: VolumeMount,
    pub fetch: Option<Container>,
    pub path: String,
}

/// Where a `model.uri` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// `pvc://<claim>/<path>`.
    Claim { claim: &'a str, path: &'a str },
    /// Any scheme the storage initializer downloads.
    Download,
}

pub fn source(uri: &str) -> Source<'_> {
    match uri.strip_prefix("pvc://") {
        Some(rest) => {
            let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
            Source::Claim {
                claim,
                path: path.trim_matches('/'),
            }
        }
        None => Source::Download,
    }
}

/// `None` without `model.storage` (the server reads MODEL_URI itself).
pub fn model_volume(served: &ServedVersion, platform: &Platform) -> Option<ModelVolume> {
    let storage = served.model.storage.as_ref()?;
    let uri = served.model.uri.as_deref()?;
    let mount_path = storage
        .mount_path
        .clone()
        .unwrap_or_else(|| DEFAULT_MOUNT_PATH.to_string());
    let mount = |read_only: bool| VolumeMount {
        name: MODEL_VOLUME.to_string(),
        mount_path: mount_path.clone(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    match source(uri) {
        Source::Claim { claim, path } => Some(ModelVolume {
            volume: claim_volume(claim, true),
            mount: mount(true),
            fetch: None,
            path: match path {
                "" => mount_path.clone(),
                path => format!("{}/{path}", mount_path.trim_end_matches('/')),
            },
        }),
        Source::Download => {
            let volume = match &storage.cache_claim_name {
                Some(claim) => claim_volume(claim, false),
                None => Volume {
                    name: MODEL_VOLUME.to_string(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        medium: None,
                        size_limit: storage.size_limit.clone(),
                    }),
                    ..Volume::default()
                },
            };
            let fetch = platform.fetch_image.as_ref().map(|image| Container {
                name: FETCH_CONTAINER.to_string(),
                image: Some(image.clone()),
                // The storage initializer's interface: source, destination.
                args: Some(vec![uri.to_string(), mount_path.clone()]),
                env_from: storage.credentials_secret_name.as_ref().map(|secret| {
                    vec![EnvFromSource {
                        secret_ref: Some(SecretEnvSource {
                            name: secret.clone(),
                            optional: Some(false),
                        }),
                        ..EnvFromSource::default()
                    }]
                }),
                volume_mounts: Some(vec![mount(false)]),
                security_context: Some(container_security(None, false)),
                ..Container::default()
            });
            Some(ModelVolume {
                volume,
                mount: mount(true),
                fetch,
                path: mount_path,
            })
        }
    }
}

fn claim_volume(claim: &str, read_only: bool) -> Volume {
    Volume {
        name: MODEL_VOLUME.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_string(),
            read_only: Some(read_only),
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_their_source() {
        for (uri, expected) in [
            (
                "pvc://weights/llama/3",
                Source::Claim {
                    claim: "weights",
                    path: "llama/3",
                },
            ),
            (
                "pvc://weights",
                Source::Claim {
                    claim: "weights",
                    path: "",
                },
            ),
            (
                "pvc://weights/",
                Source::Claim {
                    claim: "weights",
                    path: "",
                },
            ),
            ("s3://bucket/model", Source::Download),
            ("hf://meta-llama/Llama-3.1-8B", Source::Download),
            ("https://example.test/m.tar.gz", Source::Download),
        ] {
            assert_eq!(source(uri), expected, "{uri}");
        }
    }
}
