//! NetworkPolicy semantics, pure: which of this node's pods are isolated, in which direction, and
//! what each isolating policy's rules let through — peers resolved to addresses (pods matched by
//! podSelector and namespaceSelector, ipBlocks with their exceptions) and ports resolved to numbers
//! (named ports looked up on the pods that carry them). A pod no policy selects is not isolated; a
//! direction a policy isolates with no rules allows nothing; a rule without peers allows every source
//! (or destination), one without ports every port.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

/// A port a rule allows: protocol and a range of port numbers (all ports when None).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub protocol: String,
    pub ports: Option<(u16, u16)>,
}

/// The addresses a rule's peers stand for: networks, and networks carved out of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    pub networks: Vec<IpNet>,
    pub except: Vec<IpNet>,
}

/// One rule of one policy, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `<namespace>/<policy>/<direction>/<index>`: names the rule's chain comment and address sets.
    pub id: String,
    /// None: any peer. Otherwise the selected pods' addresses, and each ipBlock on its own (its
    /// exceptions must not carve into what another peer of the rule allows).
    pub peers: Option<Vec<Peers>>,
    /// Empty: any port.
    pub ports: Vec<PortRange>,
}

/// A pod of this node that some policy isolates, with what each isolated direction lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolated {
    pub pod: String,
    pub ip: IpAddr,
    /// None when no policy isolates the pod's ingress.
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

fn selector(selector: &LabelSelector) -> Option<Selector> {
    Selector::try_from(selector.clone()).ok()
}

fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    let status = pod.status.as_ref()?;
    if pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
        return None;
    }
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

fn labels_of<K: kube::Resource>(object: &K) -> BTreeMap<String, String> {
    object.meta().labels.clone().unwrap_or_default()
}

/// The cluster's pods and namespaces as policies see them.
pub struct World<'a> {
    pub pods: &'a [Arc<Pod>],
    pub namespaces: &'a [Arc<Namespace>],
}

impl World<'_> {
    fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        let namespace = self.namespaces.iter().find(|n| n.metadata.name.as_deref() == Some(name));
        let mut labels = namespace.map(|n| labels_of(n.as_ref())).unwrap_or_default();
        // Set by the API server on every namespace since 1.22; assumed here for older objects.
        labels.entry("kubernetes.io/metadata.name".into()).or_insert_with(|| name.to_string());
        labels
    }

    /// The addressed pods `peer` selects for a policy in `namespace`.
    fn peer_pods(&self, peer: &NetworkPolicyPeer, namespace: &str) -> Vec<&Arc<Pod>> {
        let (Some(pod_selector), namespace_selector) = (
            peer.pod_selector.as_ref().map(selector).unwrap_or_else(|| Some(Selector::default())),
            peer.namespace_selector.as_ref().map(selector),
        ) else {
            return Vec::new();
        };
        // Each namespace is judged once, not once per pod.
        let mut judged: BTreeMap<String, bool> = BTreeMap::new();
        let mut in_namespace = |pod_namespace: &str| -> bool {
            match &namespace_selector {
                None => pod_namespace == namespace,
                Some(None) => false,
                Some(Some(selector)) => *judged
                    .entry(pod_namespace.to_string())
                    .or_insert_with(|| selector.matches(&self.namespace_labels(pod_namespace))),
            }
        };
        self.pods
            .iter()
            .filter(|pod| pod_ip(pod).is_some())
            .filter(|pod| {
                in_namespace(pod.metadata.namespace.as_deref().unwrap_or_default())
                    && pod_selector.matches(&labels_of(pod.as_ref()))
            })
            .collect()
    }
}

/// The named port `name` on `pod`, as (protocol, number).
fn named_port(pod: &Pod, name: &str) -> Vec<(String, u16)> {
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.name.as_deref() == Some(name))
        .filter_map(|p| {
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), u16::try_from(p.container_port).ok()?))
        })
        .collect()
}

/// A rule's ports as ranges; named ports resolved on `carriers` (the pods the traffic goes to).
fn port_ranges(ports: &[NetworkPolicyPort], carriers: &[&Arc<Pod>]) -> Vec<PortRange> {
    let mut ranges = Vec::new();
    for port in ports {
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
        match &port.port {
            None => ranges.push(PortRange { protocol, ports: None }),
            Some(IntOrString::Int(number)) => {
                let first = u16::try_from(*number).unwrap_or(0);
                let last = port.end_port.and_then(|e| u16::try_from(e).ok()).unwrap_or(first);
                ranges.push(PortRange { protocol, ports: Some((first, last.max(first))) });
            }
            Some(IntOrString::String(name)) => {
                for (carried, number) in carriers.iter().flat_map(|pod| named_port(pod, name)) {
                    if carried == protocol {
                        ranges.push(PortRange { protocol: protocol.clone(), ports: Some((number, number)) });
                    }
                }
            }
        }
    }
    ranges.sort();
    ranges.dedup();
    ranges
}

fn peers(world: &World, peers: &[NetworkPolicyPeer], namespace: &str) -> (Vec<Peers>, Vec<Arc<Pod>>) {
    let mut selected = Peers::default();
    let mut blocks = Vec::new();
    let mut pods = Vec::new();
    for peer in peers {
        if let Some(block) = &peer.ip_block {
            let networks = block.cidr.parse::<IpNet>().ok().into_iter().collect();
            let except = block.except.iter().flatten().filter_map(|e| e.parse::<IpNet>().ok()).collect();
            blocks.push(Peers { networks, except });
            continue;
        }
        for pod in world.peer_pods(peer, namespace) {
            selected.networks.extend(pod_ip(pod).map(IpNet::from));
            pods.push(pod.clone());
        }
    }
    selected.networks.sort();
    selected.networks.dedup();
    let resolved = std::iter::once(selected).filter(|s| !s.networks.is_empty()).chain(blocks).collect();
    (resolved, pods)
}

/// The pods of `node` that `policies` isolate, with their resolved rules.
pub fn isolated(policies: &[Arc<NetworkPolicy>], world: &World, node: &str) -> Vec<Isolated> {
    let mut isolated = Vec::new();
    let mut sorted: Vec<&Arc<NetworkPolicy>> = policies.iter().collect();
    sorted.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    let local = world.pods.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node));
    for pod in local {
        let (Some(ip), Some(namespace)) = (pod_ip(pod), pod.metadata.namespace.as_deref()) else { continue };
        let mut entry = Isolated {
            pod: format!("{namespace}/{}", pod.metadata.name.as_deref().unwrap_or_default()),
            ip,
            ingress: None,
            egress: None,
        };
        for policy in &sorted {
            let (Some(spec), Some(policy_namespace)) = (&policy.spec, policy.metadata.namespace.as_deref()) else {
                continue;
            };
            let selects = policy_namespace == namespace
                && spec
                    .pod_selector
                    .as_ref()
                    .map_or(Some(Selector::default()), selector)
                    .is_some_and(|s| s.matches(&labels_of(pod.as_ref())));
            if !selects {
                continue;
            }
            let types: Vec<&str> = match &spec.policy_types {
                Some(types) => types.iter().map(String::as_str).collect(),
                None if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) => vec!["Ingress", "Egress"],
                None => vec!["Ingress"],
            };
            let name = policy.metadata.name.as_deref().unwrap_or_default();
            if types.contains(&"Ingress") {
                let rules = entry.ingress.get_or_insert_with(Vec::new);
                for (index, rule) in spec.ingress.iter().flatten().enumerate() {
                    let id = format!("{policy_namespace}/{name}/ingress/{index}");
                    let peers =
                        rule.from.as_ref().filter(|f| !f.is_empty()).map(|f| peers(world, f, policy_namespace).0);
                    let ports = port_ranges(rule.ports.as_deref().unwrap_or_default(), &[pod]);
                    if rule.ports.as_ref().is_some_and(|p| !p.is_empty()) && ports.is_empty() {
                        continue; // only named ports the pod does not have: allows nothing
                    }
                    rules.push(Rule { id, peers, ports });
                }
            }
            if types.contains(&"Egress") {
                let rules = entry.egress.get_or_insert_with(Vec::new);
                for (index, rule) in spec.egress.iter().flatten().enumerate() {
                    let id = format!("{policy_namespace}/{name}/egress/{index}");
                    let (peers, carriers) = match rule.to.as_ref().filter(|t| !t.is_empty()) {
                        Some(to) => {
                            let (peers, pods) = peers(world, to, policy_namespace);
                            (Some(peers), pods)
                        }
                        None => (None, world.pods.to_vec()),
                    };
                    let carriers: Vec<&Arc<Pod>> = carriers.iter().collect();
                    let ports = port_ranges(rule.ports.as_deref().unwrap_or_default(), &carriers);
                    if rule.ports.as_ref().is_some_and(|p| !p.is_empty()) && ports.is_empty() {
                        continue;
                    }
                    rules.push(Rule { id, peers, ports });
                }
            }
        }
        if entry.ingress.is_some() || entry.egress.is_some() {
            isolated.push(entry);
        }
    }
    isolated
}

#[cfg(test)]
mod tests;
