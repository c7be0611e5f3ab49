//! Where a DaemonSet's pods belong (upstream's NodeShouldRunDaemonPod): a node whose labels satisfy the
//! template's nodeSelector and required node affinity and whose NoSchedule/NoExecute taints the pod
//! tolerates — with the tolerations every daemon pod gets (not-ready, unreachable, pressure,
//! unschedulable; network-unavailable for host-network pods), so cordoned or failing nodes keep their
//! daemons. A daemon pod is pinned to its node by required node affinity on `metadata.name`, and the
//! default scheduler binds it there.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, Toleration,
};

use crate::scheduler::affinity;

/// The tolerations upstream adds to every daemon pod.
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let toleration = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(toleration("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

/// Adds the daemon tolerations the pod lacks.
pub fn add_tolerations(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else { return };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for wanted in daemon_tolerations(spec.host_network == Some(true)) {
        let covered = tolerations.iter().any(|t| t.key == wanted.key && t.effect == wanted.effect);
        if !covered {
            tolerations.push(wanted);
        }
    }
}

/// Whether a daemon pod (with its tolerations added) should run on `node`.
pub fn should_run(pod: &Pod, node: &Node) -> bool {
    affinity::required_node_affinity_matches(pod, node)
        && affinity::untolerated(node, affinity::tolerations_of(pod), &["NoSchedule", "NoExecute"]).is_empty()
}

/// Pins the pod to `node` through required node affinity on the node's name.
pub fn pin(pod: &mut Pod, node: &str) {
    let Some(spec) = pod.spec.as_mut() else { return };
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(NodeSelector { node_selector_terms: vec![term] });
}

/// The node a daemon pod is on, or is pinned to.
pub fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    let required =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    let fields = required.node_selector_terms.first()?.match_fields.as_ref()?;
    let pinned = fields.iter().find(|f| f.key == "metadata.name" && f.operator == "In")?;
    pinned.values.as_ref()?.first().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(labels: Value, taints: Value, unschedulable: bool) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints, "unschedulable": unschedulable}}))
            .expect("node")
    }

    fn daemon(spec: Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
        let mut pod: Pod = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": spec})).expect("pod");
        add_tolerations(&mut pod);
        pod
    }

    #[test]
    fn daemons_skip_tainted_and_unselected_nodes_but_not_cordoned_ones() {
        let plain = daemon(json!({}));
        assert!(should_run(&plain, &node(json!({}), json!([]), true)), "cordoned nodes keep their daemons");
        assert!(should_run(
            &plain,
            &node(json!({}), json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]), false)
        ));
        assert!(!should_run(
            &plain,
            &node(json!({}), json!([{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]), false)
        ));
        let selective = daemon(json!({"nodeSelector": {"disk": "ssd"}}));
        assert!(!should_run(&selective, &node(json!({}), json!([]), false)));
        assert!(should_run(&selective, &node(json!({"disk": "ssd"}), json!([]), false)));
    }

    #[test]
    fn pinned_pods_name_their_node() {
        let mut pod = daemon(json!({}));
        pin(&mut pod, "n7");
        assert_eq!(node_of(&pod).as_deref(), Some("n7"));
    }
}
