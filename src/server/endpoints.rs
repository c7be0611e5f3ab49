//! The `kubernetes` Service's endpoints: every API server of the cluster, kept as upstream's lease
//! endpoint reconciler keeps them. Each server holds a Lease `apiserver-<Raft node id>` in kube-system
//! (labelled `apiserver.kubernetes.io/identity=kube-apiserver`, its advertised address in an
//! annotation) and renews it every [`RENEW_PERIOD`]; a server deletes any other server's Lease it has
//! seen unchanged for [`LEASE_DURATION`] (measured on its own clock, so clock skew between servers does
//! not matter). The Endpoints and EndpointSlices then list the servers whose Leases remain: agents
//! learn the servers from there (see `crate::agent::balancer`), pods reach the API through them. A
//! server stopping cleanly takes itself out (another server's round in flight may put it back until
//! its next one).
//!
//! Servers normally share one port; servers on one host (tests, demos) differ by port, so the
//! addresses are grouped: one Endpoints subset per port, one EndpointSlice (`kubernetes`,
//! `kubernetes-2`, …) per port and address family. Every server compares both with what it would
//! write, so a race between two servers' writes is mended at the next round.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::{json, Value};

/// Upstream's lease endpoint reconciler keeps a 15 s TTL; renewing three times within it rides out a
/// slow write.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_PERIOD: Duration = Duration::from_secs(5);
const LEASE_NAMESPACE: &str = "kube-system";
const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
const ENDPOINT_ANNOTATION: &str = "tug.dev/apiserver-endpoint";
const SERVICE: &str = "kubernetes";
const NAMESPACE: &str = "default";
const MANAGER: &str = "tug-apiserver-endpoints";

/// This server's part in the `kubernetes` endpoints.
#[derive(Clone)]
pub struct ApiServerEndpoints {
    leases: Api<Lease>,
    endpoints: Api<Endpoints>,
    slices: Api<EndpointSlice>,
    lease_name: String,
    identity: String,
    /// This host's name, as the Lease's `kubernetes.io/hostname` label.
    host: String,
    address: SocketAddr,
    /// Other servers' Leases: the resourceVersion last seen and when it was first seen.
    seen: HashMap<String, (Option<String>, Instant)>,
}

impl ApiServerEndpoints {
    /// This server, Raft node `node_id` known as `identity`, serving the API at `address`.
    pub fn new(client: Client, node_id: u64, identity: String, address: SocketAddr) -> ApiServerEndpoints {
        ApiServerEndpoints {
            leases: Api::namespaced(client.clone(), LEASE_NAMESPACE),
            endpoints: Api::namespaced(client.clone(), NAMESPACE),
            slices: Api::namespaced(client, NAMESPACE),
            lease_name: format!("apiserver-{node_id}"),
            identity,
            host: hostname::get().map(|h| h.to_string_lossy().to_ascii_lowercase()).unwrap_or_default(),
            address,
            seen: HashMap::new(),
        }
    }

    /// Puts this server in the endpoints now (so pods started next reach it); the task that keeps it
    /// there, renewing every [`RENEW_PERIOD`].
    pub async fn start(mut self) -> impl std::future::Future<Output = ()> {
        if let Err(error) = self.reconcile().await {
            tracing::warn!(%error, "cannot add this server to the kubernetes service's endpoints yet");
        }
        async move {
            loop {
                tokio::time::sleep(RENEW_PERIOD).await;
                if let Err(error) = self.reconcile().await {
                    tracing::debug!(%error, "cannot update the kubernetes service's endpoints yet");
                }
            }
        }
    }

    /// One round: renew, forget the lapsed, write the endpoints if they differ.
    async fn reconcile(&mut self) -> kube::Result<()> {
        self.renew().await?;
        let servers = self.live_servers().await?;
        self.write(&servers).await
    }

    /// Takes this server out: its Lease deleted, the endpoints written without it. Other servers
    /// that listed the Lease just before may put it back for one round.
    pub async fn withdraw(&mut self) -> kube::Result<()> {
        match self.leases.delete(&self.lease_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
        }
        let mut servers = self.live_servers().await?;
        servers.remove(&self.address);
        self.write(&servers).await
    }

    async fn renew(&self) -> kube::Result<()> {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.lease_name, "namespace": LEASE_NAMESPACE,
                "labels": {IDENTITY_LABEL: "kube-apiserver", "kubernetes.io/hostname": self.host},
                "annotations": {ENDPOINT_ANNOTATION: self.address.to_string()}},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": LEASE_DURATION.as_secs(),
                "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now())},
        });
        self.leases.patch(&self.lease_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(lease)).await?;
        Ok(())
    }

    /// The addresses of the servers whose Leases are alive; lapsed Leases are deleted.
    async fn live_servers(&mut self) -> kube::Result<BTreeSet<SocketAddr>> {
        let selector = format!("{IDENTITY_LABEL}=kube-apiserver");
        let leases = self.leases.list(&ListParams::default().labels(&selector)).await?;
        let mut servers = BTreeSet::from([self.address]);
        let mut present = BTreeSet::new();
        for lease in leases {
            let Some(name) = lease.metadata.name.clone() else { continue };
            present.insert(name.clone());
            let version = lease.metadata.resource_version.clone();
            let changed = self.seen.get(&name).is_none_or(|(seen, _)| *seen != version);
            if changed {
                self.seen.insert(name.clone(), (version.clone(), Instant::now()));
            }
            let lapsed = self.seen[&name].1.elapsed() >= LEASE_DURATION;
            if name != self.lease_name && lapsed {
                tracing::info!(lease = name, "an API server's lease lapsed; removing it from the endpoints");
                let precondition = Preconditions { resource_version: version, uid: None };
                let params = DeleteParams { preconditions: Some(precondition), ..DeleteParams::default() };
                if let Err(error) = self.leases.delete(&name, &params).await {
                    tracing::debug!(%error, lease = name, "cannot delete a lapsed lease");
                }
                continue;
            }
            let annotations = lease.metadata.annotations.unwrap_or_default();
            if let Some(address) = annotations.get(ENDPOINT_ANNOTATION).and_then(|a| a.parse().ok()) {
                servers.insert(address);
            }
        }
        self.seen.retain(|name, _| present.contains(name));
        Ok(servers)
    }

    /// Writes the slices, then the Endpoints, when either differs from `servers`; slices of groups no
    /// longer there are deleted.
    async fn write(&self, servers: &BTreeSet<SocketAddr>) -> kube::Result<()> {
        let selector = format!("kubernetes.io/service-name={SERVICE},endpointslice.kubernetes.io/managed-by=tug");
        let slices = self.slices.list(&ListParams::default().labels(&selector)).await?.items;
        let wanted = desired_slices(servers);
        let endpoints_current = self.endpoints.get_opt(SERVICE).await?.is_some_and(|e| listed(&e) == *servers);
        let slices_current = slices.len() == wanted.len()
            && wanted.iter().all(|(name, addresses)| {
                slices.iter().any(|s| s.metadata.name.as_deref() == Some(name) && sliced(s) == *addresses)
            });
        if endpoints_current && slices_current {
            return Ok(());
        }
        let params = PatchParams::apply(MANAGER).force();
        for (name, addresses) in &wanted {
            self.slices.patch(name, &params, &Patch::Apply(slice(name, addresses))).await?;
        }
        for stale in slices {
            let name = stale.metadata.name.unwrap_or_default();
            if !wanted.contains_key(&name) {
                self.slices.delete(&name, &DeleteParams::default()).await?;
            }
        }
        self.endpoints.patch(SERVICE, &params, &Patch::Apply(endpoints(&by_port(servers)))).await?;
        tracing::info!(servers = ?servers, "the kubernetes service's endpoints are now these servers");
        Ok(())
    }
}

/// The addresses an Endpoints object lists.
pub fn listed(endpoints: &Endpoints) -> BTreeSet<SocketAddr> {
    let mut addresses = BTreeSet::new();
    for subset in endpoints.subsets.iter().flatten() {
        for port in subset.ports.iter().flatten().filter_map(|p| u16::try_from(p.port).ok()) {
            for address in subset.addresses.iter().flatten() {
                if let Ok(ip) = address.ip.parse::<IpAddr>() {
                    addresses.insert(SocketAddr::new(ip, port));
                }
            }
        }
    }
    addresses
}

/// The addresses an EndpointSlice lists.
fn sliced(slice: &EndpointSlice) -> BTreeSet<SocketAddr> {
    let ports = slice.ports.iter().flatten().filter_map(|p| p.port.and_then(|port| u16::try_from(port).ok()));
    let ips: Vec<IpAddr> =
        slice.endpoints.iter().flat_map(|e| e.addresses.iter()).filter_map(|a| a.parse().ok()).collect();
    ports.flat_map(|port| ips.iter().map(move |ip| SocketAddr::new(*ip, port))).collect()
}

fn by_port(servers: &BTreeSet<SocketAddr>) -> BTreeMap<u16, Vec<IpAddr>> {
    let mut groups: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
    for server in servers {
        groups.entry(server.port()).or_default().push(server.ip());
    }
    groups
}

/// The slices to write, by name: one per port and address family.
fn desired_slices(servers: &BTreeSet<SocketAddr>) -> BTreeMap<String, BTreeSet<SocketAddr>> {
    let mut groups: BTreeMap<(u16, bool), BTreeSet<SocketAddr>> = BTreeMap::new();
    for server in servers {
        groups.entry((server.port(), server.is_ipv6())).or_default().insert(*server);
    }
    groups.into_values().enumerate().map(|(index, addresses)| (slice_name(index), addresses)).collect()
}

fn slice_name(index: usize) -> String {
    match index {
        0 => SERVICE.to_string(),
        _ => format!("{SERVICE}-{}", index + 1),
    }
}

fn port(port: u16) -> Value {
    json!([{"name": "https", "port": port, "protocol": "TCP"}])
}

/// A slice of `addresses`, which share a port and an address family.
fn slice(name: &str, addresses: &BTreeSet<SocketAddr>) -> Value {
    let first = addresses.first().copied();
    let endpoints: Vec<Value> =
        addresses.iter().map(|a| json!({"addresses": [a.ip().to_string()], "conditions": {"ready": true}})).collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": SERVICE, "endpointslice.kubernetes.io/managed-by": "tug"}},
        "addressType": if first.is_some_and(|a| a.is_ipv6()) { "IPv6" } else { "IPv4" },
        "endpoints": endpoints, "ports": port(first.map_or(0, |a| a.port()))})
}

fn endpoints(groups: &BTreeMap<u16, Vec<IpAddr>>) -> Value {
    let subsets: Vec<Value> = groups
        .iter()
        .map(|(port_number, ips)| {
            let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
            json!({"addresses": addresses, "ports": port(*port_number)})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_on_one_port_share_a_subset_and_a_slice_and_other_ports_or_families_get_their_own() {
        let servers: BTreeSet<SocketAddr> = ["10.0.0.2:6443", "10.0.0.1:6443", "10.0.0.1:7443", "[fd00::1]:6443"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let written: Endpoints = serde_json::from_value(endpoints(&by_port(&servers))).unwrap();
        assert_eq!(listed(&written), servers, "the Endpoints read back as the servers written");
        assert_eq!(written.subsets.as_ref().unwrap().len(), 2, "a subset per port");
        let slices = desired_slices(&servers);
        assert_eq!(slices.keys().collect::<Vec<_>>(), ["kubernetes", "kubernetes-2", "kubernetes-3"]);
        let first: EndpointSlice = serde_json::from_value(slice("kubernetes", &slices["kubernetes"])).unwrap();
        assert_eq!(first.address_type, "IPv4");
        assert_eq!(sliced(&first), slices["kubernetes"], "a slice reads back as its addresses");
        assert_eq!(sliced(&first).len(), 2);
        let v6: EndpointSlice = serde_json::from_value(slice("kubernetes-2", &slices["kubernetes-2"])).unwrap();
        assert_eq!(v6.address_type, "IPv6");
    }
}
