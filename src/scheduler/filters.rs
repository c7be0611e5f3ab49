//! The filters that decide whether a pod fits a node, in upstream's plugin order (NodeUnschedulable,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, PodTopologySpread, InterPodAffinity), each failing with upstream's reason text
//! so the FailedScheduling message reads as kube-scheduler's does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::affinity;
use super::cache::{HostPort, NodeInfo};
use super::resources::PodDemand;
use super::topology::Rules;

/// What the filters need of the pod, computed once per scheduling attempt.
pub struct Candidate<'a> {
    pub pod: &'a Pod,
    pub demand: PodDemand,
    pub ports: Vec<HostPort>,
    /// Spread and pod affinity, when the pod or a placed pod has such rules.
    pub topology: Option<Rules<'a>>,
}

impl<'a> Candidate<'a> {
    pub fn new(pod: &'a Pod, topology: Option<Rules<'a>>) -> Candidate<'a> {
        Candidate { pod, demand: PodDemand::of(pod), ports: HostPort::of(pod), topology }
    }
}

/// Ok when the pod fits the node; otherwise the reasons it does not.
pub fn fits(candidate: &Candidate, node: &Node, info: &NodeInfo) -> Result<(), Vec<String>> {
    let one = |reason: &str| Err(vec![reason.to_string()]);
    let tolerations = affinity::tolerations_of(candidate.pod);
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let cordon =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Taint::default() };
        if !tolerations.iter().any(|t| affinity::tolerates(t, &cordon)) {
            return one("node(s) were unschedulable");
        }
    }
    if let Some(taint) = affinity::untolerated(node, tolerations, &["NoSchedule", "NoExecute"]).first() {
        let value = taint.value.as_deref().unwrap_or("");
        return Err(vec![format!("node(s) had untolerated taint {{{}: {}}}", taint.key, value)]);
    }
    if !affinity::required_node_affinity_matches(candidate.pod, node) {
        return one("node(s) didn't match Pod's node affinity/selector");
    }
    if info.port_conflict(&candidate.ports) {
        return one("node(s) didn't have free ports for the requested pod ports");
    }
    resources_fit(&candidate.demand, info)?;
    candidate.topology.as_ref().map_or(Ok(()), |rules| rules.fits(node).map_err(|reason| vec![reason]))
}

/// NodeResourcesFit: pod count, then every requested resource against what is left.
fn resources_fit(demand: &PodDemand, info: &NodeInfo) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    if info.pod_count + 1 > info.allocatable.pods {
        reasons.push("Too many pods".to_string());
    }
    let wanted = &demand.requests;
    let allocatable = &info.allocatable.resources;
    let used = &info.requested.requests;
    if wanted.milli_cpu > 0 && allocatable.milli_cpu - used.milli_cpu < wanted.milli_cpu {
        reasons.push("Insufficient cpu".into());
    }
    if wanted.memory > 0 && allocatable.memory - used.memory < wanted.memory {
        reasons.push("Insufficient memory".into());
    }
    let amount = |map: &BTreeMap<String, i64>, name: &str| map.get(name).copied().unwrap_or(0);
    for (name, want) in wanted.other.iter().filter(|(_, want)| **want > 0) {
        if amount(&allocatable.other, name) - amount(&used.other, name) < *want {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Upstream's FitError text: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were unschedulable."
pub fn unschedulable_message(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    if nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut counted: Vec<String> = reasons.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
    counted.sort();
    format!("0/{nodes} nodes are available: {}.", counted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::Cache;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn node(spec: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n", "labels": {"disk": "ssd"}}, "spec": spec,
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "2"}}}))
        .unwrap()
    }

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i", "resources": {"requests": {"cpu": "600m"}}}]);
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn check(node: Node, pod: &Pod, placed: &[&Pod]) -> Result<(), Vec<String>> {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node.clone()));
        for (i, p) in placed.iter().enumerate() {
            cache.place(&format!("ns/{i}"), p, "n");
        }
        let (_, info) = cache.nodes().next().unwrap();
        fits(&Candidate::new(pod, None), &node, info)
    }

    #[test]
    fn each_filter_names_its_reason() {
        let plain = pod(json!({}));
        assert_eq!(check(node(json!({})), &plain, &[]), Ok(()));
        assert_eq!(
            check(node(json!({"unschedulable": true})), &plain, &[]),
            Err(vec!["node(s) were unschedulable".into()])
        );
        let tainted = node(json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}));
        assert_eq!(check(tainted, &plain, &[]), Err(vec!["node(s) had untolerated taint {k: v}".into()]));
        let elsewhere = pod(json!({"nodeSelector": {"disk": "hdd"}}));
        assert_eq!(
            check(node(json!({})), &elsewhere, &[]),
            Err(vec!["node(s) didn't match Pod's node affinity/selector".into()])
        );
        assert_eq!(check(node(json!({})), &plain, &[&plain]), Err(vec!["Insufficient cpu".into()]));
        let small = serde_json::from_value::<Pod>(
            json!({"metadata": {"name": "s"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
        assert_eq!(check(node(json!({})), &small, &[&small, &small]), Err(vec!["Too many pods".into()]));
    }

    #[test]
    fn cordoned_nodes_take_pods_that_tolerate_the_cordon() {
        let tolerant = pod(json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}));
        assert_eq!(check(node(json!({"unschedulable": true})), &tolerant, &[]), Ok(()));
    }

    #[test]
    fn message_counts_reasons_in_upstream_order() {
        let reasons = BTreeMap::from([
            ("Insufficient cpu".to_string(), 1),
            ("node(s) had untolerated taint {k: v}".to_string(), 2),
        ]);
        assert_eq!(
            unschedulable_message(3, &reasons),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}."
        );
        assert_eq!(unschedulable_message(0, &BTreeMap::new()), "no nodes available to schedule pods");
    }
}
