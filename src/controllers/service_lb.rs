//! The built-in ServiceLB (k3s's klipper-lb, without its pods): a LoadBalancer Service without a
//! loadBalancerClass gets the addresses of the Ready nodes (their ExternalIP, else their InternalIP)
//! as its ingress, and every node's proxy sends traffic for those addresses and the Service's ports
//! to the Service. As with klipper-lb, a port (and protocol) serves one Service only: a later Service
//! asking for a port an earlier one holds stays pending. Nodes labelled
//! `svccontroller.k3s.cattle.io/enablelb=true`, if any are, are the only ones used.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const ENABLE_LABEL: &str = "svccontroller.k3s.cattle.io/enablelb";

/// The addresses a LoadBalancer Service is given: one per usable node.
pub fn node_addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let labelled = |node: &Node| node.labels().get(ENABLE_LABEL).is_some_and(|v| v == "true");
    let any_labelled = nodes.iter().any(|n| labelled(n));
    let mut addresses: BTreeSet<String> = BTreeSet::new();
    for node in nodes.iter().filter(|n| !any_labelled || labelled(n)) {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let node_addresses = status.and_then(|s| s.addresses.as_ref()).into_iter().flatten();
        let of_type = |kind: &str| {
            node_addresses.clone().filter(|a| a.type_ == kind).map(|a| a.address.clone()).collect::<Vec<_>>()
        };
        let external = of_type("ExternalIP");
        if ready {
            addresses.extend(if external.is_empty() { of_type("InternalIP") } else { external });
        }
    }
    addresses.into_iter().collect()
}

fn is_ours(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_ref()).is_none()
}

/// The ingress each of our Services should have, oldest Service first holding its ports.
pub fn assign(services: &[Arc<Service>], addresses: &[String]) -> Vec<(Arc<Service>, Vec<String>)> {
    let mut ours: Vec<&Arc<Service>> = services.iter().filter(|s| is_ours(s)).collect();
    ours.sort_by_key(|s| (s.metadata.creation_timestamp.clone().map(|t| t.0), s.namespace(), s.name_any()));
    let mut taken: HashSet<(i32, String)> = HashSet::new();
    ours.into_iter()
        .map(|service| {
            let ports: Vec<(i32, String)> = service
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
                .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
                .collect();
            let free = ports.iter().all(|port| !taken.contains(port));
            if free {
                taken.extend(ports);
            }
            (service.clone(), if free { addresses.to_vec() } else { Vec::new() })
        })
        .collect()
}

fn current_ingress(service: &Service) -> Vec<String> {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.clone()).collect()
}

/// Keeps the LoadBalancer Services' ingress as the nodes say.
pub async fn run(client: Client) {
    let (services, service_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let service_events = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(service_writer)
        .map(|e| matches!(e, Ok(watcher::Event::InitDone)));
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(node_writer)
        .map(|e| matches!(e, Ok(watcher::Event::InitDone)));
    let mut events = std::pin::pin!(futures::stream::select(
        service_events.map(|done| (done, false)),
        node_events.map(|done| (false, done))
    ));
    let (mut services_listed, mut nodes_listed) = (false, false);
    while let Some((services_done, nodes_done)) = events.next().await {
        services_listed |= services_done;
        nodes_listed |= nodes_done;
        if !(services_listed && nodes_listed) {
            continue;
        }
        let addresses = node_addresses(&nodes.state());
        for (service, wanted) in assign(&services.state(), &addresses) {
            if current_ingress(&service) == wanted {
                continue;
            }
            let api: Api<Service> = Api::namespaced(client.clone(), &service.namespace().unwrap_or_default());
            let ingress: Vec<_> = wanted.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
            let status = json!({"status": {"loadBalancer": {"ingress": ingress}}});
            if let Err(error) =
                api.patch_status(&service.name_any(), &PatchParams::default(), &Patch::Merge(status)).await
            {
                tracing::warn!(%error, service = service.name_any(), "servicelb: cannot set the ingress");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, addresses: serde_json::Value, labels: serde_json::Value) -> Arc<Node> {
        let status = if ready { "True" } else { "False" };
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
                "status": {"conditions": [{"type": "Ready", "status": status}], "addresses": addresses}}))
            .unwrap(),
        )
    }

    fn lb(name: &str, created: &str, port: i32) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
                "spec": {"type": "LoadBalancer", "ports": [{"port": port}]}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn ready_nodes_lend_their_external_or_internal_address() {
        let nodes = [
            node("a", true, json!([{"type": "InternalIP", "address": "10.0.0.1"}]), json!({})),
            node(
                "b",
                true,
                json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "ExternalIP", "address": "203.0.113.2"}]),
                json!({}),
            ),
            node("c", false, json!([{"type": "InternalIP", "address": "10.0.0.3"}]), json!({})),
        ];
        assert_eq!(node_addresses(&nodes), ["10.0.0.1", "203.0.113.2"]);
        let only = [
            nodes[0].clone(),
            node("d", true, json!([{"type": "InternalIP", "address": "10.0.0.4"}]), json!({ENABLE_LABEL: "true"})),
        ];
        assert_eq!(node_addresses(&only), ["10.0.0.4"]);
    }

    #[test]
    fn a_port_serves_the_oldest_service_and_later_ones_wait() {
        let services = [
            lb("late", "2026-01-02T00:00:00Z", 80),
            lb("early", "2026-01-01T00:00:00Z", 80),
            lb("other", "2026-01-03T00:00:00Z", 81),
        ];
        let assigned = assign(&services, &["10.0.0.1".to_string()]);
        let by_name: Vec<(String, usize)> = assigned.iter().map(|(s, a)| (s.name_any(), a.len())).collect();
        assert_eq!(by_name, [("early".to_string(), 1), ("late".to_string(), 0), ("other".to_string(), 1)]);
    }
}
