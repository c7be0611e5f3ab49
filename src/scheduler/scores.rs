//! Ranking the nodes a pod fits: upstream's default score plugins and weights — least allocated (1),
//! balanced allocation (1), preferred node affinity (2), PreferNoSchedule taints (3), topology spread (2)
//! and preferred inter-pod affinity (2) — each scored
//! 0–100; ties go to a random one of the best, as upstream picks.

use k8s_openapi::api::core::v1::Node;

use super::affinity;
use super::cache::NodeInfo;
use super::filters::Candidate;
use super::topology::Placements;

const MAX_SCORE: i64 = 100;

/// A node the pod fits.
pub struct Feasible<'a> {
    pub name: &'a str,
    pub node: &'a Node,
    pub info: &'a NodeInfo,
}

/// The index of the best node; `random` breaks ties.
pub fn best(candidate: &Candidate, feasible: &[Feasible], placed: &Placements, random: u64) -> usize {
    if feasible.len() <= 1 {
        return 0;
    }
    let preferred: Vec<i64> =
        feasible.iter().map(|f| affinity::preferred_node_affinity_weight(candidate.pod, f.node)).collect();
    let tolerations = affinity::tolerations_of(candidate.pod);
    let soft_taints: Vec<i64> = feasible
        .iter()
        .map(|f| affinity::untolerated(f.node, tolerations, &["PreferNoSchedule"]).len() as i64)
        .collect();
    let (spread, pod_affinity) = topology_scores(candidate, feasible, placed);
    let max_preferred = preferred.iter().copied().max().unwrap_or(0);
    let max_soft = soft_taints.iter().copied().max().unwrap_or(0);
    let totals = feasible.iter().enumerate().map(|(i, f)| {
        let (least, balanced) = allocation_scores(candidate, f.info);
        let affinity = if max_preferred > 0 { preferred[i] * MAX_SCORE / max_preferred } else { 0 };
        let taints = if max_soft > 0 { MAX_SCORE - soft_taints[i] * MAX_SCORE / max_soft } else { MAX_SCORE };
        least + balanced + 2 * affinity + 3 * taints + 2 * spread[i] + 2 * pod_affinity[i]
    });
    let totals: Vec<i64> = totals.collect();
    let top = totals.iter().copied().max().unwrap_or(0);
    let best: Vec<usize> = (0..totals.len()).filter(|i| totals[*i] == top).collect();
    best[(random % best.len() as u64) as usize]
}

/// PodTopologySpread (fewer matching pods in the node's domain is better; a node without the domain
/// label scores 0) and InterPodAffinity (preferred terms), each normalized to 0–100 over the nodes.
fn topology_scores(candidate: &Candidate, feasible: &[Feasible], placed: &Placements) -> (Vec<i64>, Vec<i64>) {
    let Some(rules) = candidate.topology.as_ref() else {
        return (vec![0; feasible.len()], vec![0; feasible.len()]);
    };
    let raw: Vec<(Option<i64>, i64)> = feasible.iter().map(|f| rules.raw_scores(f.node, placed)).collect();
    let crowding: Vec<Option<i64>> = raw.iter().map(|(spread, _)| spread.map(|s| -s)).collect();
    let (least, most) = crowding.iter().flatten().fold((i64::MAX, 0), |(lo, hi), c| (lo.min(*c), hi.max(*c)));
    let spread = crowding
        .iter()
        .map(|c| match c {
            None => 0,
            Some(_) if most == 0 => MAX_SCORE,
            Some(c) => MAX_SCORE * (most + least - c) / most,
        })
        .collect();
    let affinity: Vec<i64> = raw.iter().map(|(_, a)| *a).collect();
    let (lo, hi) = (affinity.iter().copied().min().unwrap_or(0), affinity.iter().copied().max().unwrap_or(0));
    let affinity = affinity.iter().map(|a| if hi > lo { (a - lo) * MAX_SCORE / (hi - lo) } else { 0 }).collect();
    (spread, affinity)
}

/// LeastAllocated and BalancedAllocation over cpu and memory, with the pod counted in (and the non-zero
/// defaults for containers that request nothing).
fn allocation_scores(candidate: &Candidate, info: &NodeInfo) -> (i64, i64) {
    let fraction = |requested: i64, allocatable: i64| {
        if allocatable <= 0 {
            1.0
        } else {
            (requested as f64 / allocatable as f64).min(1.0)
        }
    };
    let allocatable = &info.allocatable.resources;
    let cpu = fraction(info.requested.scoring_milli_cpu + candidate.demand.scoring_milli_cpu, allocatable.milli_cpu);
    let memory = fraction(info.requested.scoring_memory + candidate.demand.scoring_memory, allocatable.memory);
    let least = ((1.0 - cpu) * MAX_SCORE as f64 + (1.0 - memory) * MAX_SCORE as f64) / 2.0;
    let balanced = (1.0 - (cpu - memory).abs() / 2.0) * MAX_SCORE as f64;
    (least as i64, balanced as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::Cache;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn node(name: &str, labels: Value, taints: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"}}}))
        .unwrap()
    }

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        spec["containers"] =
            json!([{"name": "c", "image": "i", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]);
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn pick(nodes: Vec<Node>, placed: &[(&str, Pod)], candidate: &Pod) -> String {
        let mut cache = Cache::default();
        for n in nodes {
            cache.set_node(Arc::new(n));
        }
        for (i, (on, p)) in placed.iter().enumerate() {
            cache.place(&format!("ns/{i}"), p, on);
        }
        let candidate = Candidate::new(candidate, None);
        let feasible: Vec<Feasible> =
            cache.nodes().map(|(name, info)| Feasible { name, node: info.node.as_deref().unwrap(), info }).collect();
        (0..8)
            .map(|r| feasible[best(&candidate, &feasible, &Vec::new(), r)].name.to_string())
            .reduce(|a, b| {
                assert_eq!(a, b, "a clear winner does not depend on the tie-breaker");
                a
            })
            .unwrap()
    }

    #[test]
    fn prefers_the_emptier_node() {
        let nodes = vec![node("a", json!({}), json!([])), node("b", json!({}), json!([]))];
        assert_eq!(pick(nodes, &[("a", pod(json!({})))], &pod(json!({}))), "b");
    }

    #[test]
    fn preferred_affinity_outweighs_a_little_load() {
        let nodes = vec![node("a", json!({"zone": "x"}), json!([])), node("b", json!({}), json!([]))];
        let wants_x = pod(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]}}]}}}));
        assert_eq!(pick(nodes, &[("a", pod(json!({})))], &wants_x), "a");
    }

    #[test]
    fn avoids_prefer_no_schedule_taints() {
        let nodes = vec![
            node("a", json!({}), json!([{"key": "k", "effect": "PreferNoSchedule"}])),
            node("b", json!({}), json!([])),
        ];
        assert_eq!(pick(nodes, &[("b", pod(json!({})))], &pod(json!({}))), "b");
    }
}
