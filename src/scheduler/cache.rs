//! The scheduler's view of the cluster: every node with what its placed pods request, the host ports they
//! hold and how many there are, kept from the node and pod watches plus the pods it has just assumed
//! onto a node and is still binding (upstream's scheduler cache with assumed pods), and what the topology
//! rules need of each placed pod and of each namespace (its labels).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::resources::{Allocatable, PodDemand};
use super::topology::{NamespaceLabels, PlacedPod, Placements};

/// A host port a pod holds: conflicts with the same protocol and port on the same or a wildcard address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    pub fn of(pod: &Pod) -> Vec<HostPort> {
        let Some(spec) = pod.spec.as_ref() else {
            return vec![];
        };
        let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
        containers
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|port| *port > 0)?;
                let ip = p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
                Some(HostPort { ip, protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), port })
            })
            .collect()
    }

    fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A node and what is placed on it.
#[derive(Debug, Default)]
pub struct NodeInfo {
    /// None while pods name a node the watch has not shown (yet or any more).
    pub node: Option<Arc<Node>>,
    pub allocatable: Allocatable,
    pub requested: PodDemand,
    pub pod_count: i64,
    host_ports: HashMap<HostPort, usize>,
}

impl NodeInfo {
    pub fn port_conflict(&self, wanted: &[HostPort]) -> bool {
        wanted.iter().any(|w| self.host_ports.keys().any(|held| held.conflicts(w)))
    }
}

/// A pod counted against a node.
#[derive(Debug)]
struct Placed {
    node: String,
    demand: PodDemand,
    ports: Vec<HostPort>,
    topology: PlacedPod,
}

/// Nodes by name, and the pods counted against them by namespace/name.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<String, NodeInfo>,
    placed: HashMap<String, Placed>,
    /// How many placed pods have required anti-affinity (which every newcomer must respect).
    with_anti_affinity: usize,
    namespace_labels: NamespaceLabels,
}

impl Cache {
    /// Adds or replaces a node; true when what scheduling looks at (labels, spec, allocatable) changed.
    pub fn set_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = self.nodes.entry(name).or_default();
        let allocatable = Allocatable::of(&node);
        let changed = info.node.as_ref().is_none_or(|old| {
            old.metadata.labels != node.metadata.labels || old.spec != node.spec || info.allocatable != allocatable
        });
        info.allocatable = allocatable;
        info.node = Some(node);
        changed
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            info.node = None;
            if info.pod_count == 0 {
                self.nodes.remove(name);
            }
        }
    }

    /// Records a namespace's labels; true when they changed.
    pub fn set_namespace_labels(&mut self, name: String, labels: BTreeMap<String, String>) -> bool {
        self.namespace_labels.insert(name, labels.clone()).is_none_or(|old| old != labels)
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespace_labels.remove(name);
    }

    pub fn retain_namespaces(&mut self, names: &std::collections::HashSet<String>) {
        self.namespace_labels.retain(|name, _| names.contains(name));
    }

    pub fn namespace_labels(&self) -> &NamespaceLabels {
        &self.namespace_labels
    }

    /// The nodes the watch has shown, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &NodeInfo)> {
        self.nodes.iter().filter(|(_, info)| info.node.is_some()).map(|(name, info)| (name.as_str(), info))
    }

    /// Whether some placed pod has required anti-affinity.
    pub fn has_anti_affinity(&self) -> bool {
        self.with_anti_affinity > 0
    }

    /// Every placed pod on a node the watch has shown, with that node.
    pub fn placements(&self) -> Placements<'_> {
        let node = |p: &Placed| self.nodes.get(&p.node).and_then(|info| info.node.as_deref());
        self.placed.values().filter_map(|p| Some((node(p)?, &p.topology))).collect()
    }

    /// Counts `pod` against `node` (replacing whatever was counted for it before).
    pub fn place(&mut self, key: &str, pod: &Pod, node: &str) {
        self.forget(key);
        let topology = PlacedPod::of(pod);
        self.with_anti_affinity += usize::from(!topology.anti_affinity.is_empty());
        let placed = Placed { node: node.to_string(), demand: PodDemand::of(pod), ports: HostPort::of(pod), topology };
        let info = self.nodes.entry(node.to_string()).or_default();
        placed.demand.add_to(&mut info.requested);
        info.pod_count += 1;
        for port in &placed.ports {
            *info.host_ports.entry(port.clone()).or_default() += 1;
        }
        self.placed.insert(key.to_string(), placed);
    }

    /// Stops counting the pod; returns the node it was counted against.
    pub fn forget(&mut self, key: &str) -> Option<String> {
        let placed = self.placed.remove(key)?;
        self.with_anti_affinity -= usize::from(!placed.topology.anti_affinity.is_empty());
        let Some(info) = self.nodes.get_mut(&placed.node) else {
            return Some(placed.node);
        };
        placed.demand.subtract_from(&mut info.requested);
        info.pod_count -= 1;
        for port in &placed.ports {
            if let Some(count) = info.host_ports.get_mut(port) {
                *count -= 1;
                if *count == 0 {
                    info.host_ports.remove(port);
                }
            }
        }
        if info.node.is_none() && info.pod_count == 0 {
            self.nodes.remove(&placed.node);
        }
        Some(placed.node)
    }

    /// Drops every pod not in `keep` (after the pod watch relisted).
    pub fn retain_pods(&mut self, keep: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self.placed.keys().filter(|k| !keep.contains(*k)).cloned().collect();
        for key in gone {
            self.forget(&key);
        }
    }

    /// Drops every node not in `keep` (after the node watch relisted).
    pub fn retain_nodes(&mut self, keep: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self.nodes.keys().filter(|k| !keep.contains(*k)).cloned().collect();
        for name in gone {
            self.remove_node(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(cpu: &str, host_port: Option<i32>) -> Pod {
        let mut container = json!({"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}});
        if let Some(port) = host_port {
            container["ports"] = json!([{"containerPort": 80, "hostPort": port}]);
        }
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [container]}})).unwrap()
    }

    #[test]
    fn placing_and_forgetting_keeps_node_sums() {
        let mut cache = Cache::default();
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        cache.set_node(Arc::new(node));
        cache.place("ns/a", &pod("100m", Some(8080)), "n");
        cache.place("ns/b", &pod("200m", None), "n");
        cache.place("ns/b", &pod("300m", None), "n");
        let info =
            |c: &Cache| (c.nodes.get("n").unwrap().requested.requests.milli_cpu, c.nodes.get("n").unwrap().pod_count);
        assert_eq!(info(&cache), (400, 2));
        let wanted = HostPort::of(&pod("0", Some(8080)));
        assert!(cache.nodes.get("n").unwrap().port_conflict(&wanted));
        assert_eq!(cache.forget("ns/a").as_deref(), Some("n"));
        assert_eq!(info(&cache), (300, 1));
        assert!(!cache.nodes.get("n").unwrap().port_conflict(&wanted));
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_the_node() {
        let mut cache = Cache::default();
        cache.place("ns/a", &pod("100m", None), "later");
        assert_eq!(cache.nodes().count(), 0);
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "later"}})).unwrap();
        cache.set_node(Arc::new(node));
        let (_, info) = cache.nodes().next().unwrap();
        assert_eq!(info.requested.requests.milli_cpu, 100);
        cache.remove_node("later");
        cache.forget("ns/a");
        assert!(cache.nodes.is_empty());
    }

    #[test]
    fn host_ports_conflict_on_wildcard_or_same_address() {
        let port = |ip: &str, protocol: &str| HostPort { ip: ip.into(), protocol: protocol.into(), port: 80 };
        assert!(port("0.0.0.0", "TCP").conflicts(&port("127.0.0.1", "TCP")));
        assert!(!port("127.0.0.2", "TCP").conflicts(&port("127.0.0.1", "TCP")));
        assert!(!port("0.0.0.0", "UDP").conflicts(&port("0.0.0.0", "TCP")));
    }
}
