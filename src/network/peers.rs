//! Pod traffic to the other nodes: for every peer node (its podCIDR and InternalIP from the Node
//! object), with host-gw a route to its podCIDR via its address; with VXLAN a route to its podCIDR
//! via its VTEP address (the podCIDR's first address) on the VXLAN device, a permanent ARP entry for
//! that address with the peer's VTEP MAC, and a forwarding entry sending that MAC to the peer's
//! address. VTEP MACs are derived from the podCIDR, so no node has to publish its own. Entries of
//! peers that left are removed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::Node;
use rtnetlink::{Error, Handle};

use super::netlink;

/// Another node's share of the pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pod_cidr: Ipv4Net,
    pub address: Ipv4Addr,
}

/// The peers of node `me`: every other node with an IPv4 podCIDR inside `cluster_cidr` and an IPv4
/// InternalIP.
pub fn peers(nodes: &[Arc<Node>], me: &str, cluster_cidr: IpNet) -> BTreeMap<String, Peer> {
    let mut peers = BTreeMap::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref().filter(|name| *name != me) else { continue };
        let pod_cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| c.parse::<Ipv4Net>().ok());
        let address = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse::<Ipv4Addr>().ok());
        if let (Some(pod_cidr), Some(address)) = (pod_cidr, address) {
            if cluster_cidr.contains(&IpAddr::V4(pod_cidr.network())) {
                peers.insert(name.to_string(), Peer { pod_cidr, address });
            }
        }
    }
    peers
}

/// The MAC of the VXLAN device of the node whose podCIDR is `pod_cidr`: locally administered, unicast.
pub fn vtep_mac(pod_cidr: Ipv4Net) -> [u8; 6] {
    let [a, b, c, d] = pod_cidr.network().octets();
    [0x0e, 0x74, a, b, c, d]
}

/// How peers are reached.
#[derive(Debug, Clone, Copy)]
pub enum Overlay {
    HostGw,
    /// The VXLAN device's index.
    Vxlan(u32),
}

/// The peers programmed into the kernel.
pub struct Peering {
    handle: Handle,
    overlay: Overlay,
    programmed: Option<BTreeMap<String, Peer>>,
}

impl Peering {
    pub fn new(handle: Handle, overlay: Overlay) -> Peering {
        Peering { handle, overlay, programmed: None }
    }

    fn route(&self, peer: &Peer) -> rtnetlink::packet_route::route::RouteMessage {
        let cidr = peer.pod_cidr;
        match self.overlay {
            Overlay::HostGw => netlink::route(cidr.network(), cidr.prefix_len(), peer.address, None),
            Overlay::Vxlan(device) => netlink::route(cidr.network(), cidr.prefix_len(), cidr.network(), Some(device)),
        }
    }

    /// Makes the kernel's entries those of `desired`, repairing whatever was changed under it; one
    /// peer that cannot be programmed does not keep the others from being. The first error, if any.
    pub async fn sync(&mut self, desired: BTreeMap<String, Peer>) -> Result<(), Error> {
        let mut first_error = None;
        for peer in desired.values() {
            if let Err(error) = self.program(peer).await {
                first_error.get_or_insert(error);
            }
        }
        if let Err(error) = self.prune(&desired).await {
            first_error.get_or_insert(error);
        }
        if self.programmed.as_ref() != Some(&desired) {
            tracing::info!(peers = ?desired.keys().collect::<Vec<_>>(), "pod network: routes to the other nodes set");
            self.programmed = Some(desired);
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn program(&self, peer: &Peer) -> Result<(), Error> {
        if let Overlay::Vxlan(device) = self.overlay {
            let (vtep, mac) = (peer.pod_cidr.network(), vtep_mac(peer.pod_cidr));
            netlink::replace_neighbour(&self.handle, device, vtep, mac).await?;
            netlink::replace_fdb(&self.handle, device, mac, peer.address).await?;
        }
        netlink::replace_route(&self.handle, self.route(peer)).await
    }

    /// Removes the routes and VXLAN entries of peers not in `desired`.
    async fn prune(&self, desired: &BTreeMap<String, Peer>) -> Result<(), Error> {
        let wanted: Vec<(Ipv4Addr, u8)> =
            desired.values().map(|p| (p.pod_cidr.network(), p.pod_cidr.prefix_len())).collect();
        for (route, destination, prefix) in netlink::our_routes(&self.handle).await? {
            if !wanted.contains(&(destination, prefix)) {
                netlink::delete_route(&self.handle, route).await?;
            }
        }
        if let Overlay::Vxlan(device) = self.overlay {
            let vteps: Vec<Ipv4Addr> = desired.values().map(|p| p.pod_cidr.network()).collect();
            let macs: Vec<[u8; 6]> = desired.values().map(|p| vtep_mac(p.pod_cidr)).collect();
            netlink::prune_peers(&self.handle, device, &vteps, &macs).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: &str, ip: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr},
                "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}}))
            .unwrap(),
        )
    }

    #[test]
    fn peers_are_the_other_nodes_with_a_pod_cidr_and_an_address() {
        let nodes = [
            node("a", "10.42.0.0/24", "192.0.2.1"),
            node("b", "10.42.1.0/24", "192.0.2.2"),
            node("c", "10.99.0.0/24", "192.0.2.3"),
            node("d", "10.42.3.0/24", "fd00::4"),
        ];
        let peers = peers(&nodes, "a", "10.42.0.0/16".parse().unwrap());
        assert_eq!(peers.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(
            peers["b"],
            Peer { pod_cidr: "10.42.1.0/24".parse().unwrap(), address: "192.0.2.2".parse().unwrap() }
        );
    }

    #[test]
    fn vtep_macs_are_local_unicast_and_distinct_per_pod_cidr() {
        let mac = vtep_mac("10.42.1.0/24".parse().unwrap());
        assert_eq!(mac, [0x0e, 0x74, 10, 42, 1, 0]);
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered, not multicast");
        assert_ne!(mac, vtep_mac("10.42.2.0/24".parse().unwrap()));
    }
}
