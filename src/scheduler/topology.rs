//! Placement relative to other pods, by topology domain (the value of a node label such as
//! `kubernetes.io/hostname` or `topology.kubernetes.io/zone`): upstream's PodTopologySpread (maxSkew,
//! minDomains, matchLabelKeys, nodeAffinityPolicy/nodeTaintsPolicy; DoNotSchedule filters,
//! ScheduleAnyway scores) and InterPodAffinity (required affinity and anti-affinity filter, including
//! existing pods' anti-affinity against the newcomer; preferred terms score). The counts are taken once
//! per scheduling attempt from the cache, and only for pods that have such rules or when placed pods
//! carry anti-affinity, so ordinary pods pay nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Expression, Selector, SelectorExt};
use kube::ResourceExt;

use super::affinity;

/// What the topology rules need of a pod counted on a node.
#[derive(Debug, Clone)]
pub struct PlacedPod {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Its required anti-affinity terms, which a newcomer must respect too.
    pub anti_affinity: Vec<PodAffinityTerm>,
}

impl PlacedPod {
    pub fn of(pod: &Pod) -> PlacedPod {
        PlacedPod {
            namespace: pod.namespace().unwrap_or_default(),
            labels: pod.labels().clone(),
            anti_affinity: required_terms(pod, false).to_vec(),
        }
    }
}

/// Whether the pod states spread constraints or pod (anti-)affinity.
pub fn has_rules(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()).is_some_and(|c| !c.is_empty())
        || pod_affinity(pod).is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

fn pod_affinity(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::Affinity> {
    pod.spec.as_ref()?.affinity.as_ref()
}

/// The pod's required affinity (or, with `anti`, anti-affinity) terms.
fn required_terms(pod: &Pod, affinity: bool) -> &[PodAffinityTerm] {
    let terms = if affinity {
        pod_affinity(pod)
            .and_then(|a| a.pod_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref())
    } else {
        pod_affinity(pod)
            .and_then(|a| a.pod_anti_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref())
    };
    terms.map(Vec::as_slice).unwrap_or_default()
}

/// The pod's preferred terms with their weights, anti-affinity ones negative.
fn preferred_terms(pod: &Pod) -> Vec<(i64, &PodAffinityTerm)> {
    let mut terms = Vec::new();
    if let Some(a) = pod_affinity(pod) {
        let like =
            a.pod_affinity.as_ref().and_then(|p| p.preferred_during_scheduling_ignored_during_execution.as_ref());
        let unlike =
            a.pod_anti_affinity.as_ref().and_then(|p| p.preferred_during_scheduling_ignored_during_execution.as_ref());
        terms.extend(like.into_iter().flatten().map(|w| (i64::from(w.weight), &w.pod_affinity_term)));
        terms.extend(unlike.into_iter().flatten().map(|w| (-i64::from(w.weight), &w.pod_affinity_term)));
    }
    terms
}

/// A label selector with `matchLabelKeys` added from the pod's own labels; None selects nothing.
fn selector(selector: Option<&LabelSelector>, match_label_keys: Option<&Vec<String>>, pod: &Pod) -> Option<Selector> {
    let mut selector = Selector::try_from(selector?.clone()).ok()?;
    let keys = match_label_keys.into_iter().flatten();
    selector.extend(keys.filter_map(|k| Some(Expression::Equal(k.clone(), pod.labels().get(k)?.clone()))));
    Some(selector)
}

/// An affinity term resolved against the pod that states it: which pods (namespaces and labels) it means.
struct Term<'a> {
    topology_key: &'a str,
    namespaces: Option<BTreeSet<&'a str>>,
    selector: Option<Selector>,
}

impl<'a> Term<'a> {
    /// `owner` states the term; its namespace is the default. The term means the namespaces it lists
    /// and those whose labels its namespaceSelector matches; an empty namespaceSelector means every
    /// namespace.
    fn new(
        term: &'a PodAffinityTerm,
        owner_namespace: &'a str,
        owner: Option<&Pod>,
        namespace_labels: &'a NamespaceLabels,
    ) -> Term<'a> {
        let mut listed: BTreeSet<&str> = term.namespaces.iter().flatten().map(String::as_str).collect();
        let everywhere = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
        });
        if let Some(chosen) = term.namespace_selector.as_ref().and_then(|s| Selector::try_from(s.clone()).ok()) {
            listed.extend(namespace_labels.iter().filter(|(_, l)| chosen.matches(l)).map(|(n, _)| n.as_str()));
        }
        let namespaces = match (everywhere, listed.is_empty() && term.namespace_selector.is_none()) {
            (true, _) => None,
            (false, true) => Some(BTreeSet::from([owner_namespace])),
            (false, false) => Some(listed),
        };
        let selector = match owner {
            Some(pod) => selector(term.label_selector.as_ref(), term.match_label_keys.as_ref(), pod),
            None => term.label_selector.as_ref().and_then(|s| Selector::try_from(s.clone()).ok()),
        };
        Term { topology_key: &term.topology_key, namespaces, selector }
    }

    fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces.as_ref().is_none_or(|n| n.contains(namespace))
            && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

fn domain<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Each namespace's labels, for affinity terms' namespaceSelector.
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

/// The placed pods with the node each is on.
pub type Placements<'a> = Vec<(&'a Node, &'a PlacedPod)>;

/// One spread constraint with its counts per domain.
struct Spread<'a> {
    constraint: &'a TopologySpreadConstraint,
    counts: HashMap<&'a str, i64>,
    /// The smallest count over the eligible domains (0 when fewer than minDomains exist).
    min: i64,
    self_match: i64,
}

/// Everything the topology rules need for one pod, computed once per attempt.
pub struct Rules<'a> {
    hard_spread: Vec<Spread<'a>>,
    soft_spread: Vec<Spread<'a>>,
    /// Per required affinity term: the domains holding a matching pod; None when no pod anywhere
    /// matches and the pod matches the term itself (the first of its group goes anywhere).
    affinity: Vec<(&'a str, Option<BTreeSet<&'a str>>)>,
    /// Per required anti-affinity term: the domains holding a matching pod.
    anti_affinity: Vec<(&'a str, BTreeSet<&'a str>)>,
    /// (topology key, domain) pairs where a placed pod's anti-affinity rejects this pod.
    rejected_by_existing: BTreeSet<(&'a str, &'a str)>,
    preferred: Vec<(i64, &'a str, Term<'a>)>,
}

impl<'a> Rules<'a> {
    /// The rules for `pod` among the `placed` pods of `nodes`.
    pub fn new(
        pod: &'a Pod,
        nodes: &[&'a Node],
        placed: &Placements<'a>,
        namespace_labels: &'a NamespaceLabels,
    ) -> Rules<'a> {
        let constraints = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or_default();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let (hard, soft): (Vec<_>, Vec<_>) = constraints.iter().partition(|c| c.when_unsatisfiable == "DoNotSchedule");
        let spread = |c: &'a TopologySpreadConstraint| Spread::new(c, pod, nodes, placed);
        let own_matches = |term: &Term| term.matches(namespace, pod.labels());
        let domains_matching = |term: &Term<'a>| -> BTreeSet<&'a str> {
            placed
                .iter()
                .filter(|(_, p)| term.matches(&p.namespace, &p.labels))
                .filter_map(|(node, _)| domain(node, term.topology_key))
                .collect()
        };
        let affinity = required_terms(pod, true)
            .iter()
            .map(|t| {
                let term = Term::new(t, namespace, Some(pod), namespace_labels);
                let domains = domains_matching(&term);
                let anywhere = placed.iter().any(|(_, p)| term.matches(&p.namespace, &p.labels));
                (term.topology_key, (anywhere || !own_matches(&term)).then_some(domains))
            })
            .collect();
        let anti_affinity = required_terms(pod, false)
            .iter()
            .map(|t| {
                let term = Term::new(t, namespace, Some(pod), namespace_labels);
                (term.topology_key, domains_matching(&term))
            })
            .collect();
        let mut rejected_by_existing = BTreeSet::new();
        for (node, placed_pod) in placed.iter().filter(|(_, p)| !p.anti_affinity.is_empty()) {
            for t in &placed_pod.anti_affinity {
                let term = Term::new(t, &placed_pod.namespace, None, namespace_labels);
                if term.matches(namespace, pod.labels()) {
                    rejected_by_existing.extend(domain(node, &t.topology_key).map(|d| (t.topology_key.as_str(), d)));
                }
            }
        }
        let preferred = preferred_terms(pod)
            .into_iter()
            .map(|(weight, t)| (weight, t.topology_key.as_str(), Term::new(t, namespace, Some(pod), namespace_labels)))
            .collect();
        Rules {
            hard_spread: hard.into_iter().map(spread).collect(),
            soft_spread: soft.into_iter().map(spread).collect(),
            affinity,
            anti_affinity,
            rejected_by_existing,
            preferred,
        }
    }

    /// The InterPodAffinity and PodTopologySpread filters, with upstream's reasons.
    pub fn fits(&self, node: &Node) -> Result<(), String> {
        for (key, domains) in &self.affinity {
            if let Some(domains) = domains {
                if domain(node, key).is_none_or(|d| !domains.contains(d)) {
                    return Err("node(s) didn't match pod affinity rules".into());
                }
            }
        }
        for (key, domains) in &self.anti_affinity {
            if domain(node, key).is_some_and(|d| domains.contains(d)) {
                return Err("node(s) didn't match pod anti-affinity rules".into());
            }
        }
        let rejected = self.rejected_by_existing.iter().any(|(key, d)| domain(node, key) == Some(*d));
        if rejected {
            return Err("node(s) didn't satisfy existing pods anti-affinity rules".into());
        }
        for spread in &self.hard_spread {
            let Some(d) = domain(node, &spread.constraint.topology_key) else {
                return Err("node(s) didn't match pod topology spread constraints (missing required label)".into());
            };
            let skew = spread.counts.get(d).copied().unwrap_or(0) + spread.self_match - spread.min;
            if skew > i64::from(spread.constraint.max_skew) {
                return Err("node(s) didn't match pod topology spread constraints".into());
            }
        }
        Ok(())
    }

    /// Raw scores (higher is better) for spreading (ScheduleAnyway) and preferred pod affinity, before
    /// normalization across the feasible nodes.
    pub fn raw_scores(&self, node: &Node, placed: &Placements) -> (Option<i64>, i64) {
        let spread = if self.soft_spread.is_empty() {
            Some(0)
        } else {
            let counts: Option<Vec<i64>> = self
                .soft_spread
                .iter()
                .map(|s| domain(node, &s.constraint.topology_key).map(|d| s.counts.get(d).copied().unwrap_or(0)))
                .collect();
            counts.map(|c| -c.iter().sum::<i64>())
        };
        let affinity = self
            .preferred
            .iter()
            .filter_map(|(weight, key, term)| {
                let here = domain(node, key)?;
                let near = placed
                    .iter()
                    .filter(|(n, p)| domain(n, key) == Some(here) && term.matches(&p.namespace, &p.labels))
                    .count() as i64;
                Some(weight * near)
            })
            .sum();
        (spread, affinity)
    }
}

impl<'a> Spread<'a> {
    fn new(
        constraint: &'a TopologySpreadConstraint,
        pod: &'a Pod,
        nodes: &[&'a Node],
        placed: &Placements<'a>,
    ) -> Spread<'a> {
        let key = constraint.topology_key.as_str();
        let honor_affinity = constraint.node_affinity_policy.as_deref() != Some("Ignore");
        let honor_taints = constraint.node_taints_policy.as_deref() == Some("Honor");
        let eligible = |node: &Node| {
            domain(node, key).is_some()
                && (!honor_affinity || affinity::required_node_affinity_matches(pod, node))
                && (!honor_taints
                    || affinity::untolerated(node, affinity::tolerations_of(pod), &["NoSchedule", "NoExecute"])
                        .is_empty())
        };
        let mut counts: HashMap<&str, i64> =
            nodes.iter().filter(|n| eligible(n)).filter_map(|n| domain(n, key)).map(|d| (d, 0)).collect();
        let selector = selector(constraint.label_selector.as_ref(), constraint.match_label_keys.as_ref(), pod);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        for (node, placed_pod) in placed {
            let matches =
                placed_pod.namespace == namespace && selector.as_ref().is_some_and(|s| s.matches(&placed_pod.labels));
            if let (true, Some(count)) = (matches, domain(node, key).and_then(|d| counts.get_mut(d))) {
                *count += 1;
            }
        }
        let min_domains = constraint.min_domains.unwrap_or(1).max(1) as usize;
        let min = if counts.len() < min_domains { 0 } else { counts.values().copied().min().unwrap_or(0) };
        let self_match = i64::from(selector.as_ref().is_some_and(|s| s.matches(pod.labels())));
        Spread { constraint, counts, min, self_match }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}}}))
        .expect("node")
    }

    fn pod(labels: Value, spec: Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}, "spec": spec}))
            .expect("pod")
    }

    /// Which of `nodes` the pod may go to, given pods placed as (node index, pod).
    fn allowed(nodes: &[Node], placed: &[(usize, Pod)], candidate: &Pod) -> Vec<String> {
        allowed_among(nodes, placed, candidate, &NamespaceLabels::new())
    }

    fn allowed_among(
        nodes: &[Node],
        placed: &[(usize, Pod)],
        candidate: &Pod,
        labels: &NamespaceLabels,
    ) -> Vec<String> {
        let placed_pods: Vec<(usize, PlacedPod)> = placed.iter().map(|(i, p)| (*i, PlacedPod::of(p))).collect();
        let placements: Placements = placed_pods.iter().map(|(i, p)| (&nodes[*i], p)).collect();
        let all: Vec<&Node> = nodes.iter().collect();
        let rules = Rules::new(candidate, &all, &placements, labels);
        nodes.iter().filter(|n| rules.fits(n).is_ok()).map(|n| n.name_any()).collect()
    }

    fn web() -> Value {
        json!({"app": "web"})
    }

    #[test]
    fn spread_keeps_the_skew_within_max_skew() {
        let nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")];
        let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        let placed = [(0, pod(web(), json!({}))), (1, pod(web(), json!({})))];
        assert_eq!(allowed(&nodes, &placed, &pod(web(), spread.clone())), ["c"], "z1 has two, z2 none");
        let placed = [(0, pod(web(), json!({}))), (2, pod(web(), json!({})))];
        assert_eq!(allowed(&nodes, &placed, &pod(web(), spread)), ["a", "b", "c"]);
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let nodes = [node("a", "z1"), node("b", "z2")];
        let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "minDomains": 3, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        let placed = [(0, pod(web(), json!({}))), (1, pod(web(), json!({})))];
        assert!(allowed(&nodes, &placed, &pod(web(), spread)).is_empty(), "a third zone would be needed");
    }

    #[test]
    fn required_anti_affinity_keeps_one_per_node_both_ways() {
        let nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")];
        let alone = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]}}});
        let placed = [(0, pod(web(), alone.clone()))];
        assert_eq!(allowed(&nodes, &placed, &pod(web(), alone)), ["b", "c"]);
        assert_eq!(allowed(&nodes, &placed, &pod(web(), json!({}))), ["b", "c"], "the placed pod's rule holds too");
        assert_eq!(allowed(&nodes, &placed, &pod(json!({"app": "db"}), json!({}))), ["a", "b", "c"]);
    }

    #[test]
    fn required_affinity_follows_the_matching_pods_domain_except_for_the_first() {
        let nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")];
        let near_web = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "web"}}}]}}});
        let placed = [(2, pod(web(), json!({})))];
        assert_eq!(allowed(&nodes, &placed, &pod(json!({"app": "cache"}), near_web.clone())), ["c"]);
        assert!(allowed(&nodes, &[], &pod(json!({"app": "cache"}), near_web.clone())).is_empty());
        assert_eq!(allowed(&nodes, &[], &pod(web(), near_web)), ["a", "b", "c"], "the first of its own group");
    }

    #[test]
    fn a_namespace_selector_with_labels_means_the_namespaces_it_matches() {
        let nodes = [node("a", "z1"), node("b", "z2")];
        let in_namespace = |namespace: &str| {
            let mut p = pod(web(), json!({}));
            p.metadata.namespace = Some(namespace.into());
            p
        };
        let placed = [(0, in_namespace("shop")), (1, in_namespace("lab"))];
        let labels: NamespaceLabels = [
            ("shop".to_string(), BTreeMap::from([("env".to_string(), "prod".to_string())])),
            ("lab".to_string(), BTreeMap::from([("env".to_string(), "test".to_string())])),
        ]
        .into();
        let away_from_prod = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}},
             "namespaceSelector": {"matchLabels": {"env": "prod"}}}]}}});
        assert_eq!(allowed_among(&nodes, &placed, &pod(web(), away_from_prod), &labels), ["b"]);
        let away_from_all = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}},
             "namespaceSelector": {}}]}}});
        assert!(allowed_among(&nodes, &placed, &pod(web(), away_from_all), &labels).is_empty());
    }
}
