//! Which nodes a pod may go to by their labels and taints: nodeSelector, node affinity terms
//! (matchExpressions and matchFields) and tolerations, with upstream's matching rules. DaemonSets ask
//! the same questions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration};
use kube::ResourceExt;

/// Whether the pod's nodeSelector and required node affinity both accept the node.
pub fn required_node_affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.labels();
    let selector_ok =
        spec.node_selector.iter().flatten().all(|(key, value)| labels.get(key).is_some_and(|v| v == value));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    selector_ok && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// The sum of the weights of the preferred node affinity terms the node satisfies.
pub fn preferred_node_affinity_weight(pod: &Pod, node: &Node) -> i64 {
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref());
    preferred.into_iter().flatten().filter(|p| term_matches(&p.preference, node)).map(|p| i64::from(p.weight)).sum()
}

/// A term matches when all its requirements do; a term with none matches nothing (upstream).
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let name_fields = BTreeMap::from([("metadata.name".to_string(), node.name_any())]);
    expressions.iter().all(|r| requirement_matches(r, node.labels()))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, &name_fields))
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    let compare = |ordering: std::cmp::Ordering| {
        let (Some(v), [bound]) = (value, values) else {
            return false;
        };
        match (v.parse::<i64>(), bound.parse::<i64>()) {
            (Ok(v), Ok(bound)) => v.cmp(&bound) == ordering,
            _ => false,
        }
    };
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(std::cmp::Ordering::Greater),
        "Lt" => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}

/// The node's taints with the given effects that none of the tolerations tolerate.
pub fn untolerated<'a>(node: &'a Node, tolerations: &[Toleration], effects: &[&str]) -> Vec<&'a Taint> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .collect()
}

/// Upstream's ToleratesTaint: same effect (or any), same key (or any with Exists), same value for Equal.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty() && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The pod's tolerations.
pub fn tolerations_of(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}}))
            .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn node_selector_and_required_terms_must_both_match() {
        let n = node(json!({"zone": "a", "size": "4"}), json!([]));
        let affinity = |op: &str, values: serde_json::Value| {
            pod(json!({"containers": [], "nodeSelector": {"zone": "a"}, "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "size", "operator": op, "values": values}]}]}}}}))
        };
        assert!(required_node_affinity_matches(&affinity("Gt", json!(["3"])), &n));
        assert!(!required_node_affinity_matches(&affinity("Lt", json!(["3"])), &n));
        assert!(required_node_affinity_matches(&affinity("In", json!(["4", "8"])), &n));
        assert!(!required_node_affinity_matches(&affinity("NotIn", json!(["4"])), &n));
        let wrong_zone = pod(json!({"containers": [], "nodeSelector": {"zone": "b"}}));
        assert!(!required_node_affinity_matches(&wrong_zone, &n));
    }

    #[test]
    fn match_fields_select_by_node_name_and_empty_terms_match_nothing() {
        let n = node(json!({}), json!([]));
        let term = |t: serde_json::Value| serde_json::from_value::<NodeSelectorTerm>(t).unwrap();
        assert!(term_matches(
            &term(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})),
            &n
        ));
        assert!(!term_matches(
            &term(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]})),
            &n
        ));
        assert!(!term_matches(&term(json!({})), &n));
    }

    #[test]
    fn tolerations_follow_upstream_rules() {
        let n = node(
            json!({}),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "soft", "effect": "PreferNoSchedule"}]),
        );
        let t = |v: serde_json::Value| serde_json::from_value::<Toleration>(v).unwrap();
        let hard = &["NoSchedule", "NoExecute"];
        assert_eq!(untolerated(&n, &[], hard).len(), 1);
        assert!(
            untolerated(&n, &[t(json!({"key": "dedicated", "operator": "Equal", "value": "gpu"}))], hard).is_empty()
        );
        assert_eq!(untolerated(&n, &[t(json!({"key": "dedicated", "value": "cpu"}))], hard).len(), 1);
        assert!(untolerated(&n, &[t(json!({"operator": "Exists"}))], hard).is_empty());
        assert_eq!(
            untolerated(&n, &[t(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}))], hard).len(),
            1
        );
        assert_eq!(untolerated(&n, &[], &["PreferNoSchedule"]).len(), 1);
    }
}
