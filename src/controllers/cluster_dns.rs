//! The endpoints of the embedded cluster DNS: every node with a podCIDR serves DNS on its pods'
//! gateway (see `crate::dns`), so the `kube-dns` Service (which has no selector) gets one endpoint per
//! such node, named by the node, in an EndpointSlice the proxies read and in the Endpoints object
//! users look at. Each endpoint is always ready: only its own node's pods use it (the Service's
//! internal traffic policy is Local), and a node cut off from the API server still answers them.
//! Written with server-side apply, only when they change.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Node};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::{json, Value};

const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
const SLICE: &str = "kube-dns-tug";
const MANAGER: &str = "tug-cluster-dns";

/// The DNS ports, as the Service declares them.
pub fn ports() -> Value {
    json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])
}

/// Each node's name and DNS address.
fn servers(nodes: &[std::sync::Arc<Node>]) -> Vec<(String, String)> {
    let mut servers: Vec<(String, String)> = nodes
        .iter()
        .filter_map(|node| {
            let name = node.metadata.name.clone()?;
            let cidr = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
            Some((name, crate::dns::listen_address(cidr)?.to_string()))
        })
        .collect();
    servers.sort();
    servers
}

fn slice(servers: &[(String, String)]) -> Value {
    let endpoints: Vec<Value> = servers
        .iter()
        .map(|(node, address)| {
            json!({"addresses": [address], "nodeName": node,
                   "conditions": {"ready": true, "serving": true, "terminating": false}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": SLICE, "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": SERVICE, "endpointslice.kubernetes.io/managed-by": MANAGER}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports()})
}

fn endpoints(servers: &[(String, String)]) -> Value {
    let addresses: Vec<Value> = servers.iter().map(|(node, ip)| json!({"ip": ip, "nodeName": node})).collect();
    let subsets = if servers.is_empty() { json!([]) } else { json!([{"addresses": addresses, "ports": ports()}]) };
    json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets})
}

/// Keeps the DNS endpoints as the Nodes say.
pub async fn run(client: Client) {
    let (store, writer) = reflector::store();
    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(writer);
    let mut nodes = std::pin::pin!(nodes);
    let params = PatchParams::apply(MANAGER).force();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let endpoint_objects: Api<Endpoints> = Api::namespaced(client, NAMESPACE);
    let mut written = None;
    let mut listed = false;
    while let Some(event) = nodes.next().await {
        listed |= matches!(event, Ok(watcher::Event::InitDone));
        let current = servers(&store.state());
        if !listed || written.as_ref() == Some(&current) {
            continue;
        }
        let result = async {
            slices.patch(SLICE, &params, &Patch::Apply(slice(&current))).await?;
            endpoint_objects.patch(SERVICE, &params, &Patch::Apply(endpoints(&current))).await
        };
        match result.await {
            Ok(_) => written = Some(current),
            Err(error) => tracing::warn!(%error, "cluster DNS: cannot write the endpoints"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>) -> std::sync::Arc<Node> {
        std::sync::Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr}})).unwrap(),
        )
    }

    #[test]
    fn every_node_with_a_pod_cidr_serves_dns_on_its_gateway() {
        let nodes = [node("b", Some("10.42.1.0/24")), node("a", Some("10.42.0.0/24")), node("c", None)];
        let servers = servers(&nodes);
        assert_eq!(servers, [("a".into(), "10.42.0.1".into()), ("b".into(), "10.42.1.1".into())]);
        let slice = slice(&servers);
        assert_eq!(slice["endpoints"][1]["nodeName"], "b");
        assert_eq!(slice["endpoints"][1]["conditions"]["ready"], true, "always ready: only its node uses it");
        let endpoints = endpoints(&servers);
        assert_eq!(endpoints["subsets"][0]["addresses"][1]["ip"], "10.42.1.1");
    }
}
