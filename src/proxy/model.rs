//! What the proxy renders from: each port of each Service with the addresses it is reached at and
//! the endpoints that serve it, read from Services and EndpointSlices as kube-proxy reads them
//! (ready endpoints; serving-and-terminating ones only when none is ready; headless Services and
//! Services of another proxy left out).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// A Service port: `namespace/name:port-name` and its protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId {
    pub namespace: String,
    pub service: String,
    pub port_name: String,
    pub protocol: Protocol,
}

impl std::fmt::Display for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service)?;
        if !self.port_name.is_empty() {
            write!(f, ":{}", self.port_name)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name iptables' `-p` takes.
    pub fn iptables(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One endpoint of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// The node it runs on, if the slice says.
    pub node: Option<String>,
}

/// A Service port, how it is reached and who serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub id: PortId,
    pub cluster_ips: Vec<IpAddr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    /// ClientIP affinity's timeout.
    pub affinity_seconds: Option<i32>,
    /// externalTrafficPolicy: Local (for a Service reached from outside).
    pub external_local: bool,
    /// internalTrafficPolicy: Local.
    pub internal_local: bool,
    /// The usable endpoints, sorted.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Whether the port is reached from outside the cluster (node port, external or load-balancer IPs).
    pub fn is_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }
}

/// The Service's cluster IPs (`clusterIPs`, and `clusterIP` for objects written without them), each
/// once; none for a headless Service.
pub fn cluster_ips(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in spec.cluster_ips.iter().flatten().chain(&spec.cluster_ip).filter_map(|ip| ip.parse().ok()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// The label naming a Service another proxy implements, which this one leaves alone.
const SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";

/// Every port of `services`, with its endpoints from `slices`.
pub fn service_ports(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Vec<ServicePort> {
    let endpoints = endpoints_by_port(slices);
    let mut ports = Vec::new();
    for service in services {
        let labels = service.metadata.labels.as_ref();
        if labels.is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME)) {
            continue;
        }
        let (Some(namespace), Some(name), Some(spec)) =
            (&service.metadata.namespace, &service.metadata.name, &service.spec)
        else {
            continue;
        };
        let cluster_ips = cluster_ips(spec);
        if cluster_ips.is_empty() || spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let parse_ips =
            |ips: &mut dyn Iterator<Item = &String>| -> Vec<IpAddr> { ips.filter_map(|ip| ip.parse().ok()).collect() };
        let external_ips = parse_ips(&mut spec.external_ips.iter().flatten());
        let load_balancer_ips = parse_ips(
            &mut service
                .status
                .iter()
                .filter_map(|s| s.load_balancer.as_ref()?.ingress.as_ref())
                .flatten()
                .filter_map(|ingress| ingress.ip.as_ref()),
        );
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()?.timeout_seconds).unwrap_or(10800)
        });
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else { continue };
            let Ok(number) = u16::try_from(port.port) else { continue };
            let id = PortId {
                namespace: namespace.clone(),
                service: name.clone(),
                port_name: port.name.clone().unwrap_or_default(),
                protocol,
            };
            let node_port = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
            let mut port = ServicePort {
                endpoints: endpoints.get(&id).cloned().unwrap_or_default(),
                id,
                cluster_ips: cluster_ips.clone(),
                port: number,
                node_port,
                external_ips: external_ips.clone(),
                load_balancer_ips: if spec.type_.as_deref() == Some("LoadBalancer") {
                    load_balancer_ips.clone()
                } else {
                    Vec::new()
                },
                affinity_seconds,
                external_local: false,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            };
            port.external_local = port.is_external() && spec.external_traffic_policy.as_deref() == Some("Local");
            ports.push(port);
        }
    }
    ports
}

/// The usable endpoints of each Service port, from the slices labelled with the Service's name.
fn endpoints_by_port(slices: &[Arc<EndpointSlice>]) -> BTreeMap<PortId, Vec<Endpoint>> {
    // Per port: the ready endpoints, and the serving-and-terminating ones for when none is ready.
    let mut found: BTreeMap<PortId, (Vec<Endpoint>, Vec<Endpoint>)> = BTreeMap::new();
    // The proxy programs iptables (IPv4); IPv6 slices are for ip6tables, which is not done yet.
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let labels = slice.metadata.labels.as_ref();
        let (Some(namespace), Some(service)) =
            (&slice.metadata.namespace, labels.and_then(|l| l.get("kubernetes.io/service-name")))
        else {
            continue;
        };
        for port in slice.ports.iter().flatten() {
            let (Some(protocol), Some(number)) = (
                Protocol::parse(port.protocol.as_deref()),
                port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0),
            ) else {
                continue;
            };
            let id = PortId {
                namespace: namespace.clone(),
                service: service.clone(),
                port_name: port.name.clone().unwrap_or_default(),
                protocol,
            };
            let (ready, terminating) = found.entry(id).or_default();
            for endpoint in &slice.endpoints {
                let conditions = endpoint.conditions.as_ref();
                let is_ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let serving = conditions.and_then(|c| c.serving).unwrap_or(is_ready);
                let is_terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
                let Some(ip) =
                    endpoint.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()).filter(IpAddr::is_ipv4)
                else {
                    continue;
                };
                let endpoint_at = Endpoint { ip, port: number, node: endpoint.node_name.clone() };
                if is_ready {
                    ready.push(endpoint_at);
                } else if serving && is_terminating {
                    terminating.push(endpoint_at);
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(id, (ready, terminating))| {
            let mut usable = if ready.is_empty() { terminating } else { ready };
            usable.sort();
            usable.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
            (id, usable)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).expect("service"))
    }

    fn slice(value: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(value).expect("slice"))
    }

    fn web_slice(endpoints: serde_json::Value) -> Arc<EndpointSlice> {
        slice(json!({"metadata": {"name": "web-abc", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}))
    }

    #[test]
    fn a_port_gets_its_addresses_and_ready_endpoints() {
        let web = service(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                "externalIPs": ["192.0.2.9"], "sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}}));
        let endpoints = web_slice(json!([
            {"addresses": ["10.42.1.5"], "conditions": {"ready": true}, "nodeName": "b"},
            {"addresses": ["10.42.0.4"], "conditions": {"ready": true}, "nodeName": "a"},
            {"addresses": ["10.42.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.42.0.7"], "conditions": {"ready": false}}]));
        let ports = service_ports(&[web], &[endpoints]);
        assert_eq!(ports.len(), 1);
        let port = &ports[0];
        assert_eq!(port.id.to_string(), "default/web:http");
        assert_eq!(port.cluster_ips, ["10.43.0.20".parse::<IpAddr>().unwrap()]);
        assert_eq!((port.port, port.node_port, port.affinity_seconds), (80, Some(30080), Some(10800)));
        assert!(port.external_local && !port.internal_local);
        let ips: Vec<String> = port.endpoints.iter().map(|e| format!("{}:{}", e.ip, e.port)).collect();
        assert_eq!(ips, ["10.42.0.4:8080", "10.42.1.5:8080"]);
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let web = service(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80}]}}));
        let endpoints = web_slice(json!([
            {"addresses": ["10.42.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}}]));
        let ports = service_ports(&[web], &[endpoints]);
        assert_eq!(ports[0].endpoints.len(), 1);
        assert!(!ports[0].external_local, "a ClusterIP service has no external policy");
    }

    #[test]
    fn headless_external_name_and_foreign_services_are_left_out() {
        let headless = service(json!({"metadata": {"name": "h", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let external = service(json!({"metadata": {"name": "e", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}));
        let foreign = service(json!({"metadata": {"name": "f", "namespace": "default",
            "labels": {"service.kubernetes.io/service-proxy-name": "other"}},
            "spec": {"clusterIP": "10.43.0.30", "ports": [{"port": 80}]}}));
        assert!(service_ports(&[headless, external, foreign], &[]).is_empty());
    }
}
