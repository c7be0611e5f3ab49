//! The embedded cluster DNS (CoreDNS's work, in every agent): a DNS server on the node's pod-network
//! gateway address (the first address of its podCIDR, port 53), which the `kube-dns` Service's
//! cluster IP leads to on every node (the Service's endpoints are the nodes' gateways and its
//! internal traffic policy is Local, so a pod asks its own node). It answers the cluster's names from
//! the agent's Service and EndpointSlice caches (`zone.rs`, rebuilt on every change) and forwards the
//! rest to the node's resolvers (its resolv.conf, as pods with dnsPolicy Default get it), caching their
//! answers (`handler.rs`).

mod handler;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use ipnet::IpNet;
use tokio::sync::watch;

use crate::network::ClusterNetwork;
use crate::proxy::cache::ServiceCache;
pub use handler::{Handler, SharedZone};

pub const PORT: u16 = 53;
/// Upstream answers kept.
const CACHE_ENTRIES: u64 = 4096;
/// How long a TCP client may stay idle.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the DNS server of the node with `pod_cidr` listens: the pods' gateway.
pub fn listen_address(pod_cidr: IpNet) -> Option<IpAddr> {
    pod_cidr.hosts().next()
}

/// Serves DNS on the gateway of `pod_cidr`, forwarding to `nameservers` (the node's resolv.conf),
/// until `stop` turns true.
pub async fn run(
    cache: ServiceCache,
    cluster: ClusterNetwork,
    pod_cidr: IpNet,
    nameservers: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(address) = listen_address(pod_cidr) else { return };
    let listen = SocketAddr::new(address, PORT);
    let upstreams = upstreams(&nameservers, &[address, cluster.cluster_dns]);
    let zone: SharedZone = Arc::new(RwLock::new(None));
    let handler = Handler { zone: zone.clone(), upstream: resolver(&upstreams) };
    let mut server = hickory_server::Server::new(handler);
    match sockets(listen) {
        Ok((udp, tcp)) => {
            server.register_socket(udp);
            server.register_listener(tcp, TCP_TIMEOUT, 64);
        }
        Err(error) => return tracing::error!(%error, %listen, "dns: cannot listen"),
    }
    tracing::info!(%listen, ?upstreams, "dns: serving the cluster's names");
    let reverse = vec![cluster.service_cidr, cluster.cluster_cidr];
    tokio::select! {
        _ = stop.wait_for(|stop| *stop) => {}
        _ = follow(cache, cluster.cluster_domain.clone(), reverse, zone) => {}
    }
    let _ = server.shutdown_gracefully().await;
}

/// Rebuilds the zone whenever the caches change.
async fn follow(cache: ServiceCache, domain: String, reverse: Vec<IpNet>, zone: SharedZone) {
    cache.synced().await;
    let mut changes = cache.changes();
    loop {
        let built = zone::Zone::build(&domain, reverse.clone(), &cache.services(), &cache.slices());
        if let Ok(mut current) = zone.write() {
            *current = Some(Arc::new(built));
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// UDP and TCP sockets on `listen`, bound even before the address exists (it appears on the pods'
/// bridge with the node's first pod).
fn sockets(listen: SocketAddr) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let open = |kind: Type, protocol: Protocol| -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(listen), kind, Some(protocol))?;
        socket.set_freebind_v4(true)?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&listen.into())?;
        Ok(socket)
    };
    let udp = open(Type::DGRAM, Protocol::UDP)?;
    let tcp = open(Type::STREAM, Protocol::TCP)?;
    tcp.listen(128)?;
    Ok((tokio::net::UdpSocket::from_std(udp.into())?, tokio::net::TcpListener::from_std(tcp.into())?))
}

/// The addresses of `nameservers`, without `exclude` (the cluster's own DNS, which would loop).
fn upstreams(nameservers: &[String], exclude: &[IpAddr]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = nameservers.iter().filter_map(|ns| ns.parse().ok()).collect();
    ips.retain(|ip| !exclude.contains(ip));
    ips.dedup();
    ips
}

/// A caching resolver asking `upstreams` (port 53).
pub fn resolver(upstreams: &[IpAddr]) -> TokioResolver {
    let servers: Vec<NameServerConfig> = upstreams.iter().map(|ip| NameServerConfig::udp_and_tcp(*ip)).collect();
    let mut options = ResolverOpts::default();
    options.cache_size = CACHE_ENTRIES;
    options.use_hosts_file = ResolveHosts::Never;
    options.ndots = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    options.preserve_intermediates = true;
    Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .unwrap_or_else(|_| {
            Resolver::builder_with_config(ResolverConfig::default(), TokioRuntimeProvider::default())
                .build()
                .expect("a resolver without upstreams")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_the_nodes_nameservers_without_the_clusters_own() {
        let conf = "search example.org\nnameserver 192.0.2.53\nnameserver 10.43.0.10\nnameserver 127.0.0.53\n";
        let nameservers = crate::kubelet::pods::dns::Resolv::parse(conf).nameservers;
        let ips = upstreams(&nameservers, &["10.43.0.10".parse().unwrap()]);
        assert_eq!(ips, ["192.0.2.53".parse::<IpAddr>().unwrap(), "127.0.0.53".parse().unwrap()]);
    }
}
