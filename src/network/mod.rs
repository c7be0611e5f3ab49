//! The pod network of a node (flannel's work, embedded in the agent): the kernel set up for it
//! (forwarding, bridge netfilter), the CNI config once node IPAM gives the node its podCIDR
//! (`cni.rs`), the masquerade rules (`masquerade.rs`), and the way to the other nodes' pods by the
//! cluster's backend — a VXLAN device or plain routes — following the Nodes as they come and go
//! (`peers.rs` over `netlink.rs`). `cleanup` removes all of it again.

pub mod cni;
pub mod masquerade;
pub mod netlink;
pub mod peers;
mod settings;

pub use settings::{Backend, ClusterNetwork, DISABLEABLE};

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::iptables::Iptables;

/// The VXLAN device (as flannel's `flannel.1`: VNI 1 on Linux's VXLAN port).
pub const VXLAN_DEVICE: &str = "tug.1";
const VXLAN_VNI: u32 = 1;
pub(crate) const VXLAN_PORT: u16 = 8472;
/// What VXLAN adds to every packet (outer Ethernet, IP, UDP and VXLAN headers).
const VXLAN_OVERHEAD: u32 = 50;
const RETRY: Duration = Duration::from_secs(5);

/// The first IPv4 address of the interface `name`.
pub fn interface_ipv4(name: &str) -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
}

/// What a node's pod network needs to know.
#[derive(Debug, Clone)]
pub struct NodeNetwork {
    pub cluster: ClusterNetwork,
    pub node_name: String,
    /// The node's address, which peers send to.
    pub node_ip: Option<IpAddr>,
    /// containerd's CNI config dir and host-local's lease dir, when tug runs containerd.
    pub cni: Option<(PathBuf, PathBuf)>,
}

/// Sets the node's pod network up, then follows the other nodes until `stop` turns true.
pub async fn run(client: Client, iptables: Iptables, network: NodeNetwork, mut stop: watch::Receiver<bool>) {
    prepare_kernel();
    if network.cluster.backend == Backend::None {
        return tracing::info!("pod network: backend none, bring your own CNI");
    }
    tokio::select! {
        _ = stop.wait_for(|stop| *stop) => {}
        _ = serve(client, iptables, network) => {}
    }
}

async fn serve(client: Client, iptables: Iptables, network: NodeNetwork) {
    let nodes: Api<Node> = Api::all(client);
    let pod_cidr = wait_for_pod_cidr(&nodes, &network.node_name).await;
    let peering = loop {
        match set_up(&iptables, &network, pod_cidr).await {
            Ok(peering) => break peering,
            Err(error) => tracing::error!(%error, "pod network: cannot set up; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    };
    follow_peers(nodes, peering, &network).await;
}

/// Waits until node IPAM has given the node a podCIDR.
pub async fn wait_for_pod_cidr(nodes: &Api<Node>, name: &str) -> IpNet {
    loop {
        let assigned = nodes.get_opt(name).await.ok().flatten().and_then(|n| n.spec?.pod_cidr);
        if let Some(cidr) = assigned.and_then(|c| c.parse::<IpNet>().ok()) {
            return cidr;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The VXLAN device or nothing (host-gw), the CNI config and the masquerade rules.
async fn set_up(iptables: &Iptables, network: &NodeNetwork, pod_cidr: IpNet) -> anyhow::Result<peers::Peering> {
    let handle = netlink::connect()?;
    let (overlay, pod_mtu) = match network.cluster.backend {
        Backend::Vxlan => {
            let (IpNet::V4(cidr), Some(IpAddr::V4(local))) = (pod_cidr, network.node_ip) else {
                anyhow::bail!(
                    "the VXLAN backend needs an IPv4 podCIDR and node IP (got {pod_cidr}, {:?})",
                    network.node_ip
                );
            };
            let (underlay, underlay_mtu) = netlink::interface_of(&handle, IpAddr::V4(local))
                .await?
                .map_or((None, 1500), |(index, mtu)| (Some(index), mtu));
            let mtu = underlay_mtu - VXLAN_OVERHEAD;
            let vxlan = netlink::Vxlan {
                name: VXLAN_DEVICE,
                vni: VXLAN_VNI,
                port: VXLAN_PORT,
                local,
                underlay: underlay.filter(|_| !local.is_loopback()),
                mtu,
                mac: peers::vtep_mac(cidr),
                address: cidr.network(),
            };
            (peers::Overlay::Vxlan(netlink::ensure_vxlan(&handle, &vxlan).await?), Some(mtu))
        }
        Backend::HostGw | Backend::None => (peers::Overlay::HostGw, None),
    };
    if let Some((conf_dir, ipam_dir)) = &network.cni {
        cni::write(conf_dir, pod_cidr, pod_mtu, ipam_dir)
            .map_err(|e| anyhow::anyhow!("cannot write the CNI config into {}: {e}", conf_dir.display()))?;
    }
    masquerade::apply(iptables, &masquerade::render(network.cluster.cluster_cidr, pod_cidr)).await?;
    Ok(peers::Peering::new(handle, overlay))
}

/// Keeps the routes to the other nodes' pods as the Nodes say, repairing them every few seconds.
async fn follow_peers(nodes: Api<Node>, mut peering: peers::Peering, network: &NodeNetwork) {
    let (store, writer) = reflector::store();
    let mut events = std::pin::pin!(watcher(nodes, watcher::Config::default()).default_backoff().reflect(writer));
    let mut retry = tokio::time::interval(RETRY);
    let mut listed = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                None => return,
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(_) => {}
            },
            _ = retry.tick() => {}
        }
        if !listed {
            continue;
        }
        let desired = peers::peers(&store.state(), &network.node_name, network.cluster.cluster_cidr);
        if let Err(error) = peering.sync(desired).await {
            tracing::error!(%error, "pod network: cannot set the routes to the other nodes");
        }
    }
}

/// Forwarding on, and bridged traffic through iptables (the br_netfilter module, loaded if need be).
fn prepare_kernel() {
    let bridge = std::path::Path::new("/proc/sys/net/bridge");
    if !bridge.exists() {
        let _ = std::process::Command::new("modprobe").arg("br_netfilter").status();
    }
    for (setting, why) in [
        ("net/ipv4/ip_forward", "pods cannot reach other nodes or the outside"),
        ("net/bridge/bridge-nf-call-iptables", "Services do not work for pods on one node (br_netfilter)"),
        ("net/bridge/bridge-nf-call-ip6tables", "IPv6 Services do not work for pods on one node"),
    ] {
        let path = std::path::Path::new("/proc/sys").join(setting);
        if let Err(error) = std::fs::write(&path, "1") {
            tracing::warn!(%error, setting, "cannot turn on {setting}: {why}");
        }
    }
}

/// Removes what the pod network, the proxy and the policies added to this host: tug's iptables
/// chains and ipsets, its routes, the VXLAN device and the pods' bridge. (The CNI config stays in
/// the data dir, which uninstalling removes.)
pub async fn cleanup() -> anyhow::Result<()> {
    for iptables in Iptables::every_backend() {
        match iptables.remove_all().await {
            Err(crate::iptables::IptablesError::Spawn { .. }) => {} // that backend is not installed
            other => other?,
        }
    }
    match crate::netpol::remove_sets().await {
        Err(crate::iptables::IptablesError::Spawn { .. }) => {} // ipset is not installed
        other => other?,
    }
    let handle = netlink::connect()?;
    for (route, _, _) in netlink::our_routes(&handle).await? {
        netlink::delete_route(&handle, route).await?;
    }
    netlink::delete_link(&handle, VXLAN_DEVICE).await?;
    netlink::delete_link(&handle, cni::BRIDGE).await?;
    Ok(())
}
