//! The Services: `-leader`, `-replica`, `-any` and the headless one for the data pods; the
//! headless one and the client one for the Sentinels.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use redis_cluster_api::labels as l;
use redis_cluster_api::names;

use super::pod::{REDIS_PORT_NAME, SENTINEL_PORT_NAME};
use super::{Cluster, data_selector, sentinel_selector};

/// In the order they are applied: `-leader`, `-replica`, `-any`, `-headless`.
pub(super) fn data_services(c: &Cluster) -> Vec<Service> {
    let name = &c.name;
    let port = service_port(REDIS_PORT_NAME, names::REDIS_PORT);
    let role = |role: &str| {
        let mut selector = data_selector(name);
        selector.insert(l::ROLE.into(), role.into());
        selector
    };
    vec![
        service(
            c.meta(names::leader_service(name)),
            role(l::ROLE_PRIMARY),
            &port,
        ),
        service(
            c.meta(names::replica_service(name)),
            role(l::ROLE_REPLICA),
            &port,
        ),
        service(c.meta(names::any_service(name)), data_selector(name), &port),
        headless(
            c.meta(names::headless_service(name)),
            data_selector(name),
            &port,
        ),
    ]
}

/// `<name>-sentinel-headless` (peer DNS), then `<name>-sentinel` (clients).
pub(super) fn sentinel_services(c: &Cluster) -> Vec<Service> {
    let name = &c.name;
    let port = service_port(SENTINEL_PORT_NAME, names::SENTINEL_PORT);
    vec![
        // Peers must find each other before they are ready, as a restarted Sentinel asks them.
        headless(
            c.sentinel_meta(names::sentinel_headless_service(name)),
            sentinel_selector(name),
            &port,
        ),
        service(
            c.sentinel_meta(names::sentinel_service(name)),
            sentinel_selector(name),
            &port,
        ),
    ]
}

fn service(
    metadata: ObjectMeta,
    selector: BTreeMap<String, String>,
    port: &ServicePort,
) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![port.clone()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A headless Service: one DNS name per pod, published before the pods are ready (a replica
/// syncing is not ready, and its peers must still resolve it).
fn headless(
    metadata: ObjectMeta,
    selector: BTreeMap<String, String>,
    port: &ServicePort,
) -> Service {
    let mut svc = service(metadata, selector, port);
    if let Some(spec) = svc.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
        spec.publish_not_ready_addresses = Some(true);
    }
    svc
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: port.into(),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}
