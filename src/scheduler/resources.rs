//! Resource amounts as the scheduler counts them: what a pod requests (containers, init containers,
//! sidecars and overhead, as upstream's resource helpers compute it) and what a node can allocate.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::core::quantity;

/// Requests counted when a container names none, for scoring only (upstream's non-zero defaults).
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// An amount of every resource: cpu in millicores, everything else in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    /// ephemeral-storage, hugepages-*, extended resources.
    pub other: BTreeMap<String, i64>,
}

impl Resources {
    fn from_map(map: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut resources = Resources::default();
        for (name, amount) in map.into_iter().flatten() {
            let whole = |q: &Quantity| quantity::parse_whole(&q.0).unwrap_or(0).clamp(0, i64::MAX as i128) as i64;
            match name.as_str() {
                "cpu" => {
                    resources.milli_cpu =
                        quantity::parse_milli(&amount.0).unwrap_or(0).clamp(0, i64::MAX as i128) as i64
                }
                "memory" => resources.memory = whole(amount),
                "pods" => {}
                other => {
                    resources.other.insert(other.to_string(), whole(amount));
                }
            }
        }
        resources
    }

    fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        for (name, amount) in &other.other {
            let entry = self.other.entry(name.clone()).or_default();
            *entry = entry.saturating_add(*amount);
        }
    }

    fn subtract(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        for (name, amount) in &other.other {
            let entry = self.other.entry(name.clone()).or_default();
            *entry = entry.saturating_sub(*amount);
        }
        self.other.retain(|_, amount| *amount != 0);
    }

    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        for (name, amount) in &other.other {
            let entry = self.other.entry(name.clone()).or_default();
            *entry = (*entry).max(*amount);
        }
    }
}

/// What a pod takes from its node: its requests, and cpu/memory with the non-zero defaults for scoring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDemand {
    pub requests: Resources,
    pub scoring_milli_cpu: i64,
    pub scoring_memory: i64,
}

impl PodDemand {
    /// Upstream's rule: the larger of the app containers (plus sidecars) and each init container (plus the
    /// sidecars started before it), plus the pod overhead.
    pub fn of(pod: &Pod) -> PodDemand {
        let Some(spec) = pod.spec.as_ref() else {
            return PodDemand::default();
        };
        let requests = |c: &Container| Resources::from_map(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        let scoring = |c: &Container| {
            let r = requests(c);
            let explicit = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            let named = |k: &str| explicit.is_some_and(|m| m.contains_key(k));
            (
                if named("cpu") { r.milli_cpu } else { DEFAULT_MILLI_CPU },
                if named("memory") { r.memory } else { DEFAULT_MEMORY },
            )
        };
        let mut total = Resources::default();
        let mut scoring_total = (0i64, 0i64);
        let mut sidecars = Resources::default();
        let mut init_peak = Resources::default();
        for init in spec.init_containers.iter().flatten() {
            if init.restart_policy.as_deref() == Some("Always") {
                sidecars.add(&requests(init));
                let (cpu, memory) = scoring(init);
                scoring_total = (scoring_total.0.saturating_add(cpu), scoring_total.1.saturating_add(memory));
            } else {
                let mut during = requests(init);
                during.add(&sidecars);
                init_peak.max(&during);
            }
        }
        total.add(&sidecars);
        for container in &spec.containers {
            total.add(&requests(container));
            let (cpu, memory) = scoring(container);
            scoring_total = (scoring_total.0.saturating_add(cpu), scoring_total.1.saturating_add(memory));
        }
        total.max(&init_peak);
        let overhead = Resources::from_map(spec.overhead.as_ref());
        total.add(&overhead);
        PodDemand {
            scoring_milli_cpu: scoring_total.0.max(init_peak.milli_cpu).saturating_add(overhead.milli_cpu),
            scoring_memory: scoring_total.1.max(init_peak.memory).saturating_add(overhead.memory),
            requests: total,
        }
    }

    pub fn add_to(&self, sum: &mut PodDemand) {
        sum.requests.add(&self.requests);
        sum.scoring_milli_cpu = sum.scoring_milli_cpu.saturating_add(self.scoring_milli_cpu);
        sum.scoring_memory = sum.scoring_memory.saturating_add(self.scoring_memory);
    }

    pub fn subtract_from(&self, sum: &mut PodDemand) {
        sum.requests.subtract(&self.requests);
        sum.scoring_milli_cpu = sum.scoring_milli_cpu.saturating_sub(self.scoring_milli_cpu);
        sum.scoring_memory = sum.scoring_memory.saturating_sub(self.scoring_memory);
    }
}

/// What a node offers: its allocatable resources and how many pods it may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub resources: Resources,
    pub pods: i64,
}

impl Allocatable {
    pub fn of(node: &Node) -> Allocatable {
        let map = node.status.as_ref().and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let pods = map.and_then(|m| m.get("pods")).and_then(|q| quantity::parse_whole(&q.0).ok()).unwrap_or(0);
        Allocatable { resources: Resources::from_map(map), pods: pods.clamp(0, i64::MAX as i128) as i64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn container(name: &str, cpu: &str, memory: &str) -> serde_json::Value {
        json!({"name": name, "image": "i", "resources": {"requests": {"cpu": cpu, "memory": memory}}})
    }

    #[test]
    fn sums_containers_and_takes_the_larger_init_container() {
        let p = pod(json!({
            "containers": [container("a", "100m", "1Mi"), container("b", "200m", "1Mi")],
            "initContainers": [container("i", "500m", "1Ki")],
            "overhead": {"cpu": "10m"}
        }));
        let demand = PodDemand::of(&p);
        assert_eq!(demand.requests.milli_cpu, 510);
        assert_eq!(demand.requests.memory, 2 * 1024 * 1024);
    }

    #[test]
    fn sidecars_run_beside_the_app_and_the_later_init_containers() {
        let mut sidecar = container("s", "100m", "0");
        sidecar["restartPolicy"] = json!("Always");
        let p = pod(json!({
            "containers": [container("a", "100m", "0")],
            "initContainers": [sidecar, container("i", "300m", "0")],
        }));
        assert_eq!(PodDemand::of(&p).requests.milli_cpu, 400);
    }

    #[test]
    fn scoring_counts_defaults_for_containers_without_requests() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}, container("b", "50m", "10Mi")]}));
        let demand = PodDemand::of(&p);
        assert!(demand.requests.milli_cpu == 50 && demand.requests.memory == 10 * 1024 * 1024);
        assert_eq!(demand.scoring_milli_cpu, 150);
        assert_eq!(demand.scoring_memory, 210 * 1024 * 1024);
    }

    #[test]
    fn allocatable_reads_pods_and_extended_resources() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "example.com/gpu": "2"}}}))
        .unwrap();
        let a = Allocatable::of(&node);
        assert_eq!((a.resources.milli_cpu, a.pods), (4000, 110));
        assert_eq!(a.resources.other.get("example.com/gpu"), Some(&2));
    }
}
