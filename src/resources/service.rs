use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec as CoreServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{PORT_NAME, child_meta, labels};
use crate::api::{ModelDeployment, ServiceType};

/// The Service in front of every pod of the ModelDeployment.
pub fn service(md: &ModelDeployment, model_name: &str) -> Service {
    let type_ = match md.spec.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: child_meta(md, model_name),
        spec: Some(CoreServiceSpec {
            type_: Some(type_.to_string()),
            selector: Some(labels::service_selector(
                &md.name_any(),
                md.metadata.uid.as_deref(),
            )),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port: md.spec.service.port,
                target_port: Some(IntOrString::String(PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..CoreServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// In-cluster URL of the model's Service.
pub fn service_url(md: &ModelDeployment) -> String {
    format!(
        "http://{}.{}.svc:{}",
        md.name_any(),
        md.namespace().unwrap_or_default(),
        md.spec.service.port
    )
}
