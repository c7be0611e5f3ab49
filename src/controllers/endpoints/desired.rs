//! What a Service's endpoints should be, from the pods its selector picks, by upstream's rules: which
//! pods count (an address, not finished; terminating ones only in slices, or with
//! publishNotReadyAddresses), their readiness, the port each service port resolves to on each pod (a
//! named targetPort can differ per pod, so pods group by their resolved ports), and the hostname of pods
//! whose subdomain names the service. Pure functions; `mod.rs` writes the results.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::controllers::pods;

/// Endpoints objects hold at most this many addresses (upstream's maxCapacity).
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;
/// An EndpointSlice holds at most this many endpoints (upstream's default maxEndpointsPerSlice).
pub const MAX_PER_SLICE: usize = 100;

/// One pod as an endpoint of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEndpoint {
    pub ip: String,
    pub node: Option<String>,
    pub hostname: Option<String>,
    pub target: ObjectReference,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// The service's ports as they resolve on this pod (in the service's order).
    pub ports: Vec<SlicePort>,
}

fn publish_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

/// Whether the service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The number a service port reaches on the pod: a number as is, a name looked up among the pod's
/// container ports with the same protocol; None when the pod has no such port.
fn resolve(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
            containers.iter().flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                    .then_some(p.container_port)
            })
        }
    }
}

/// The pods of the service as endpoints, in address order (those without an address, finished, or —
/// unless the service publishes not-ready addresses — being deleted, are left out).
pub fn pod_endpoints(service: &Service, selected: &[std::sync::Arc<Pod>]) -> Vec<PodEndpoint> {
    let publish = publish_not_ready(service);
    let service_ports = service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let mut out: Vec<PodEndpoint> = selected
        .iter()
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let ready = pods::is_ready(pod);
            let spec = pod.spec.as_ref();
            let hostname = spec.and_then(|s| s.hostname.clone()).filter(|h| {
                !h.is_empty() && spec.and_then(|s| s.subdomain.as_deref()) == Some(service.name_any().as_str())
            });
            let ports = service_ports
                .iter()
                .filter_map(|p| {
                    Some(SlicePort {
                        name: p.name.clone().or(Some(String::new())),
                        port: Some(resolve(p, pod)?),
                        protocol: p.protocol.clone().or(Some("TCP".into())),
                        app_protocol: p.app_protocol.clone(),
                    })
                })
                .collect();
            let target = ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.namespace(),
                name: Some(pod.name_any()),
                uid: pod.uid(),
                ..Default::default()
            };
            Some(PodEndpoint {
                ip,
                node: spec.and_then(|s| s.node_name.clone()),
                hostname,
                target,
                ready: publish || (ready && !terminating),
                serving: publish || ready,
                terminating,
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| a.ip.cmp(&b.ip).then_with(|| a.target.name.cmp(&b.target.name)));
    out
}

/// The port list's identity, for grouping pods whose ports resolve the same way.
pub fn ports_key(ports: &[SlicePort]) -> String {
    let parts: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    parts.join(",")
}

/// The Endpoints subsets: one per distinct set of resolved ports, ready and not-ready addresses apart;
/// terminating pods are left out unless not-ready addresses are published. Also whether addresses were
/// dropped past the capacity.
pub fn subsets(service: &Service, endpoints: &[PodEndpoint]) -> (Vec<EndpointSubset>, bool) {
    let publish = publish_not_ready(service);
    let mut groups: BTreeMap<String, EndpointSubset> = BTreeMap::new();
    let mut count = 0;
    let mut truncated = false;
    for endpoint in endpoints.iter().filter(|e| publish || !e.terminating) {
        // A service with ports whose pod resolves none of them has nothing to offer on it.
        let has_ports = service.spec.as_ref().and_then(|s| s.ports.as_ref()).is_some_and(|p| !p.is_empty());
        if has_ports && endpoint.ports.is_empty() {
            continue;
        }
        if count == MAX_ENDPOINTS_ADDRESSES {
            truncated = true;
            break;
        }
        count += 1;
        let subset = groups.entry(ports_key(&endpoint.ports)).or_insert_with(|| EndpointSubset {
            ports: (!endpoint.ports.is_empty()).then(|| endpoint.ports.iter().map(core_port).collect()),
            ..Default::default()
        });
        let address = EndpointAddress {
            ip: endpoint.ip.clone(),
            hostname: endpoint.hostname.clone(),
            node_name: endpoint.node.clone(),
            target_ref: Some(endpoint.target.clone()),
        };
        let list = if endpoint.ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        list.get_or_insert_with(Vec::new).push(address);
    }
    (groups.into_values().collect(), truncated)
}

fn core_port(port: &SlicePort) -> EndpointPort {
    EndpointPort {
        name: port.name.clone().filter(|n| !n.is_empty()),
        port: port.port.unwrap_or(0),
        protocol: port.protocol.clone(),
        app_protocol: port.app_protocol.clone(),
    }
}

/// The endpoints of one slice.
pub fn slice_endpoint(endpoint: &PodEndpoint) -> Endpoint {
    Endpoint {
        addresses: vec![endpoint.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(endpoint.ready),
            serving: Some(endpoint.serving),
            terminating: Some(endpoint.terminating),
        }),
        hostname: endpoint.hostname.clone(),
        node_name: endpoint.node.clone(),
        target_ref: Some(endpoint.target.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec})).expect("service")
    }

    fn pod(name: &str, ip: &str, ready: bool, port: i32, extra: Value) -> Arc<Pod> {
        let mut pod = json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let Some(map) = extra.as_object() {
            for (k, v) in map {
                pod["metadata"][k] = v.clone();
            }
        }
        Arc::new(serde_json::from_value(pod).expect("pod"))
    }

    #[test]
    fn ready_and_not_ready_pods_split_and_named_ports_group_them() {
        let svc = service(json!({"ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}));
        let pods = [
            pod("a", "10.0.0.2", true, 8080, json!({})),
            pod("b", "10.0.0.1", false, 8080, json!({})),
            pod("c", "10.0.0.3", true, 9090, json!({})),
            pod("gone", "10.0.0.4", true, 8080, json!({"deletionTimestamp": "2024-01-01T00:00:00Z"})),
        ];
        let endpoints = pod_endpoints(&svc, &pods);
        let (subsets, truncated) = subsets(&svc, &endpoints);
        assert!(!truncated);
        let shown: Vec<(i32, Vec<String>, Vec<String>)> = subsets
            .iter()
            .map(|s| {
                let ips = |l: &Option<Vec<EndpointAddress>>| l.iter().flatten().map(|a| a.ip.clone()).collect();
                (s.ports.as_ref().expect("ports")[0].port, ips(&s.addresses), ips(&s.not_ready_addresses))
            })
            .collect();
        assert_eq!(
            shown,
            [
                (8080, vec!["10.0.0.2".to_string()], vec!["10.0.0.1".to_string()]),
                (9090, vec!["10.0.0.3".to_string()], vec![])
            ]
        );
        let terminating = endpoints.iter().find(|e| e.target.name.as_deref() == Some("gone")).expect("in slices");
        assert_eq!((terminating.ready, terminating.serving, terminating.terminating), (false, true, true));
    }

    #[test]
    fn publishing_not_ready_addresses_makes_every_pod_ready() {
        let svc = service(json!({"publishNotReadyAddresses": true, "ports": [{"port": 80, "targetPort": 8080}]}));
        let endpoints = pod_endpoints(&svc, &[pod("b", "10.0.0.1", false, 8080, json!({}))]);
        assert!(endpoints[0].ready && endpoints[0].serving);
        let (subsets, _) = subsets(&svc, &endpoints);
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn pods_without_an_address_or_finished_are_left_out_and_hostnames_follow_the_subdomain() {
        let svc = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let mut named = (*pod("a", "10.0.0.1", true, 80, json!({}))).clone();
        named.spec.as_mut().expect("spec").hostname = Some("a".into());
        named.spec.as_mut().expect("spec").subdomain = Some("web".into());
        let mut done = (*pod("b", "10.0.0.2", true, 80, json!({}))).clone();
        done.status.as_mut().expect("status").phase = Some("Succeeded".into());
        let endpoints = pod_endpoints(&svc, &[Arc::new(named), Arc::new(done), pod("c", "", true, 80, json!({}))]);
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].hostname.as_deref(), Some("a"));
        assert!(is_headless(&svc));
    }
}
