//! The scheduler (kube-scheduler's work) as one task: it watches nodes, pods and namespaces' labels into
//! its cache, takes the pods that name `default-scheduler` and no node from its queue one at a time,
//! filters the nodes (a sample of them in large clusters, as upstream's percentageOfNodesToScore),
//! scores the ones that fit, assumes the pod onto the best and binds it through `pods/binding` in the
//! background. A pod no node fits gets a PodScheduled=False condition and a FailedScheduling event
//! with upstream's message.

pub mod affinity;
mod cache;
mod filters;
mod queue;
mod resources;
mod scores;
mod topology;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::events::{EventType, Recorder};
use cache::Cache;
use filters::Candidate;
use queue::Queue;
use scores::Feasible;

/// The `spec.schedulerName` this scheduler serves.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Below this many nodes every node is examined; above it, a shrinking share (upstream's defaults).
const MIN_FEASIBLE_NODES: usize = 100;
const MIN_FEASIBLE_PERCENT: usize = 5;

/// How a bind ended.
struct Bound {
    key: String,
    pod: Arc<Pod>,
    node: String,
    result: Result<(), kube::Error>,
}

struct Scheduler {
    client: Client,
    recorder: Arc<Recorder>,
    cache: Cache,
    queue: Queue,
    /// Pods (by key, with their uid) counted against the node chosen for them from the moment it is chosen
    /// until the watch shows them bound or gone.
    assumed: HashMap<String, Option<String>>,
    /// Where the next search starts, so the sampled nodes rotate.
    next_start: usize,
    random: u64,
    nodes_synced: bool,
    pods_synced: bool,
    namespaces_synced: bool,
    relisted_nodes: HashSet<String>,
    relisted_pods: HashSet<String>,
    relisted_namespaces: HashSet<String>,
    bound: mpsc::UnboundedSender<Bound>,
}

/// Runs until the client's server goes away.
pub async fn run(client: Client) {
    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff();
    // managedFields are never read here and are often the larger half of a pod: not kept.
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|pod| pod.metadata.managed_fields = None);
    // Namespace labels, for affinity terms' namespaceSelector.
    let namespaces = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
    let namespaces = watcher(namespaces, watcher::Config::default()).default_backoff();
    let (mut nodes, mut pods, mut namespaces) = (pin!(nodes), pin!(pods), pin!(namespaces));
    let (bound, mut bind_results) = mpsc::unbounded_channel();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut scheduler = Scheduler {
        recorder: Recorder::new(client.clone(), SCHEDULER_NAME),
        client,
        cache: Cache::default(),
        queue: Queue::default(),
        assumed: HashMap::new(),
        next_start: 0,
        random: seed | 1,
        nodes_synced: false,
        pods_synced: false,
        namespaces_synced: false,
        relisted_nodes: HashSet::new(),
        relisted_pods: HashSet::new(),
        relisted_namespaces: HashSet::new(),
        bound,
    };
    loop {
        let wake = scheduler.queue.flush(Instant::now()).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let can_schedule = scheduler.nodes_synced
            && scheduler.pods_synced
            && scheduler.namespaces_synced
            && scheduler.queue.has_ready();
        tokio::select! {
            event = nodes.next() => match event {
                Some(Ok(event)) => scheduler.on_node_event(event),
                Some(Err(error)) => tracing::debug!(%error, "scheduler node watch"),
                None => return,
            },
            event = pods.next() => match event {
                Some(Ok(event)) => scheduler.on_pod_event(event),
                Some(Err(error)) => tracing::debug!(%error, "scheduler pod watch"),
                None => return,
            },
            event = namespaces.next() => match event {
                Some(Ok(event)) => scheduler.on_namespace_event(event),
                Some(Err(error)) => tracing::debug!(%error, "scheduler namespace watch"),
                None => return,
            },
            Some(bound) = bind_results.recv() => scheduler.on_bound(bound),
            _ = std::future::ready(()), if can_schedule => scheduler.schedule_one(),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Unassigned, alive, not gated and naming this scheduler.
fn wants_this_scheduler(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

impl Scheduler {
    fn on_node_event(&mut self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Init => self.relisted_nodes.clear(),
            watcher::Event::InitApply(node) => {
                self.relisted_nodes.insert(node.name_any());
                self.node_changed(node);
            }
            watcher::Event::InitDone => {
                self.cache.retain_nodes(&self.relisted_nodes);
                self.nodes_synced = true;
                self.queue.cluster_changed();
            }
            watcher::Event::Apply(node) => self.node_changed(node),
            watcher::Event::Delete(node) => self.cache.remove_node(&node.name_any()),
        }
    }

    fn node_changed(&mut self, node: Node) {
        if self.cache.set_node(Arc::new(node)) {
            self.queue.cluster_changed();
        }
    }

    fn on_namespace_event(&mut self, event: watcher::Event<PartialObjectMeta<Namespace>>) {
        match event {
            watcher::Event::Init => self.relisted_namespaces.clear(),
            watcher::Event::InitApply(namespace) => {
                self.relisted_namespaces.insert(namespace.name_any());
                self.namespace_changed(namespace);
            }
            watcher::Event::InitDone => {
                self.cache.retain_namespaces(&self.relisted_namespaces);
                self.namespaces_synced = true;
                self.queue.cluster_changed();
            }
            watcher::Event::Apply(namespace) => self.namespace_changed(namespace),
            watcher::Event::Delete(namespace) => self.cache.remove_namespace(&namespace.name_any()),
        }
    }

    fn namespace_changed(&mut self, namespace: PartialObjectMeta<Namespace>) {
        let name = namespace.name_any();
        if self.cache.set_namespace_labels(name, namespace.metadata.labels.unwrap_or_default()) {
            self.queue.cluster_changed();
        }
    }

    fn on_pod_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.relisted_pods.clear(),
            watcher::Event::InitApply(pod) => {
                self.relisted_pods.insert(pod_key(&pod));
                self.pod_changed(pod);
            }
            watcher::Event::InitDone => {
                self.cache.retain_pods(&self.relisted_pods);
                self.queue.retain(&self.relisted_pods);
                self.assumed.retain(|key, _| self.relisted_pods.contains(key));
                self.pods_synced = true;
                self.queue.cluster_changed();
            }
            watcher::Event::Apply(pod) => self.pod_changed(pod),
            watcher::Event::Delete(pod) => {
                let key = pod_key(&pod);
                self.queue.remove(&key);
                self.assumed.remove(&key);
                if self.cache.forget(&key).is_some() {
                    self.queue.cluster_changed();
                }
            }
        }
    }

    fn pod_changed(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
        if let Some(node) = node {
            self.queue.remove(&key);
            self.assumed.remove(&key);
            if is_terminal(&pod) {
                if self.cache.forget(&key).is_some() {
                    self.queue.cluster_changed();
                }
            } else {
                self.cache.place(&key, &pod, &node);
            }
        } else if self.assumed.contains_key(&key) {
            // Its bind is in flight or done: this is an older view of it, and the watch will show it bound.
        } else if wants_this_scheduler(&pod) {
            self.queue.upsert(&key, Arc::new(pod));
        } else {
            self.queue.remove(&key);
        }
    }

    fn next_random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    /// How many fitting nodes are enough to choose from (upstream's adaptive percentageOfNodesToScore).
    fn enough_feasible(nodes: usize) -> usize {
        if nodes < MIN_FEASIBLE_NODES {
            return nodes;
        }
        let percent = (50usize.saturating_sub(nodes / 125)).max(MIN_FEASIBLE_PERCENT);
        (nodes * percent / 100).max(MIN_FEASIBLE_NODES)
    }

    fn schedule_one(&mut self) {
        let Some((key, pod)) = self.queue.pop() else {
            return;
        };
        let nodes: Vec<(&str, &cache::NodeInfo)> = self.cache.nodes().collect();
        let concerned = topology::has_rules(&pod) || self.cache.has_anti_affinity();
        let placements = if concerned { self.cache.placements() } else { Vec::new() };
        let rules = concerned.then(|| {
            let all: Vec<&Node> = nodes.iter().filter_map(|(_, info)| info.node.as_deref()).collect();
            topology::Rules::new(&pod, &all, &placements, self.cache.namespace_labels())
        });
        let candidate = Candidate::new(&pod, rules);
        let enough = Self::enough_feasible(nodes.len());
        let mut feasible = Vec::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut examined = 0;
        for i in 0..nodes.len() {
            let (name, info) = nodes[(self.next_start + i) % nodes.len()];
            let Some(node) = info.node.as_deref() else { continue };
            examined += 1;
            match filters::fits(&candidate, node, info) {
                Ok(()) => feasible.push(Feasible { name, node, info }),
                Err(failed) => failed.into_iter().for_each(|r| *reasons.entry(r).or_default() += 1),
            }
            if feasible.len() >= enough {
                break;
            }
        }
        let node_count = nodes.len();
        if feasible.is_empty() {
            self.queue.unschedulable(&key, Instant::now());
            self.report_unschedulable(&pod, filters::unschedulable_message(node_count, &reasons));
            return;
        }
        let random = self.random;
        let chosen = feasible[scores::best(&candidate, &feasible, &placements, random)].name.to_string();
        self.next_random();
        if node_count > 0 {
            self.next_start = (self.next_start + examined) % node_count;
        }
        self.cache.place(&key, &pod, &chosen);
        self.assumed.insert(key.clone(), pod.uid());
        self.bind(key, pod, chosen);
    }

    fn bind(&self, key: String, pod: Arc<Pod>, node: String) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let results = self.bound.clone();
        tokio::spawn(async move {
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.name_any(), "namespace": pod.namespace(), "uid": pod.uid()},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let result = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &pod.name_any(),
                    &PostParams::default(),
                    &binding,
                )
                .await
                .map(drop);
            let _ = results.send(Bound { key, pod, node, result });
        });
    }

    fn on_bound(&mut self, bound: Bound) {
        // A namesake may have replaced the pod meanwhile: only a result for the pod still assumed counts.
        let current = self.assumed.get(&bound.key) == Some(&bound.pod.uid());
        match bound.result {
            Ok(()) => {
                if current {
                    self.queue.remove(&bound.key);
                }
                let message = format!("Successfully assigned {} to {}", bound.key, bound.node);
                self.recorder.emit(reference(&bound.pod), EventType::Normal, "Scheduled", message);
            }
            Err(_) if !current => {}
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                // Gone, or bound by someone else: the pod watch brings the truth.
                self.queue.remove(&bound.key);
                self.assumed.remove(&bound.key);
                self.cache.forget(&bound.key);
            }
            Err(error) => {
                tracing::debug!(%error, pod = bound.key, "binding failed; will retry");
                self.assumed.remove(&bound.key);
                self.cache.forget(&bound.key);
                self.queue.retry(&bound.key, Instant::now());
            }
        }
    }

    /// The PodScheduled=False condition (written only when its message changes) and a FailedScheduling
    /// event.
    fn report_unschedulable(&self, pod: &Arc<Pod>, message: String) {
        self.recorder.emit(reference(pod), EventType::Warning, "FailedScheduling", message.clone());
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        let current = conditions.and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str())) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let name = pod.name_any();
        tokio::spawn(async move {
            let condition = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastProbeTime": null, "lastTransitionTime": jiff::Timestamp::now()});
            let patch = Patch::Strategic(json!({"status": {"conditions": [condition]}}));
            if let Err(error) = api.patch_status(&name, &PatchParams::default(), &patch).await {
                tracing::debug!(%error, pod = name, "could not mark the pod unschedulable");
            }
        });
    }
}

/// An ObjectReference to a pod, for events.
fn reference(pod: &Pod) -> ObjectReference {
    let mut reference = pod.object_ref(&());
    reference.resource_version = None;
    reference
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fewer_nodes_in_large_clusters() {
        assert_eq!(Scheduler::enough_feasible(3), 3);
        assert_eq!(Scheduler::enough_feasible(100), 100);
        assert_eq!(Scheduler::enough_feasible(1000), 420);
        assert_eq!(Scheduler::enough_feasible(5000), 500);
    }
}
