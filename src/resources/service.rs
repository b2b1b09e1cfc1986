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
            ports: Some(ports(md)),
            ..CoreServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `service.port` to the server's `http` port, then every other named port
/// of the server with its own number: the stable and canary Services are
/// made from this one, so they carry them too.
fn ports(md: &ModelDeployment) -> Vec<ServicePort> {
    let main = ServicePort {
        name: Some(PORT_NAME.to_string()),
        port: md.spec.service.port,
        target_port: Some(IntOrString::String(PORT_NAME.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    };
    let named = md.spec.server.ports.iter().flatten().map(|p| ServicePort {
        name: Some(p.name.clone()),
        port: p.container_port,
        target_port: Some(IntOrString::String(p.name.clone())),
        protocol: Some(p.protocol.map_or("TCP", |p| p.as_str()).to_string()),
        ..ServicePort::default()
    });
    std::iter::once(main).chain(named).collect()
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
