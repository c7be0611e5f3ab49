//! Node lifecycle (upstream's node lifecycle, taint-eviction and pod GC controllers, for what a fleet
//! needs): a node whose Lease and status have been silent past the grace period gets its conditions set
//! to Unknown and its pods marked not Ready; nodes are tainted by their Ready condition
//! (`node.kubernetes.io/not-ready` or `unreachable`, NoSchedule and NoExecute) and untainted when Ready
//! again; pods on a node with NoExecute taints are deleted at once unless they tolerate them, else when
//! their tolerationSeconds run out; and the pods of a deleted node are removed.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::scheduler::affinity;

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The conditions a kubelet posts, all set to Unknown when it falls silent.
const KUBELET_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

struct Lifecycle {
    client: Client,
    grace: Duration,
    nodes: Store<Node>,
    leases: Store<Lease>,
    recorder: Arc<Recorder>,
}

/// Runs until the client's server goes away.
pub async fn run(client: Client, grace: Duration) {
    let (nodes, node_writer) = reflector::store();
    let (leases, lease_writer) = reflector::store();
    let node_events =
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(node_writer);
    let lease_events = watcher(Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE), watcher::Config::default())
        .default_backoff()
        .reflect(lease_writer)
        .for_each(|_| futures::future::ready(()));
    let recorder = Recorder::new(client.clone(), "node-controller");
    let lifecycle = Lifecycle { client, grace, nodes, leases, recorder };
    let period = (grace / 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut node_events, mut lease_events) = (pin!(node_events), pin!(lease_events));
    loop {
        tokio::select! {
            event = node_events.next() => match event {
                Some(Ok(watcher::Event::Delete(node))) => lifecycle.remove_pods_of(&node.name_any()).await,
                Some(_) => {}
                None => return,
            },
            _ = &mut lease_events => return,
            _ = tick.tick() => {
                // Not awaited: this very loop drives the reflectors, so waiting here for them would never
                // end (a node then never went Unknown); a tick before both listed is skipped.
                if is_listed(&lifecycle.nodes) && is_listed(&lifecycle.leases) {
                    for node in lifecycle.nodes.state() {
                        if let Err(error) = lifecycle.monitor(&node).await {
                            tracing::debug!(%error, node = node.name_any(), "node lifecycle step failed; next period retries");
                        }
                    }
                }
            }
        }
    }
}

/// Whether the store's reflector has listed once (without waiting for it).
fn is_listed<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

fn ready_status(node: &Node) -> &str {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().find(|c| c.type_ == "Ready").map_or("Unknown", |c| c.status.as_str())
}

/// The taints a node with this Ready status carries (upstream's TaintNodesByCondition and NoExecute
/// taint manager).
fn condition_taints(ready: &str) -> Vec<(&'static str, &'static str)> {
    match ready {
        "True" => vec![],
        "False" => vec![(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")],
        _ => vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")],
    }
}

impl Lifecycle {
    /// When the node's kubelet last said it was alive: its Lease renewal or Ready heartbeat.
    fn last_heard(&self, node: &Node) -> Timestamp {
        let lease = self.leases.get(&ObjectRef::new(&node.name_any()).within(LEASE_NAMESPACE));
        let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let heartbeat =
            conditions.iter().find(|c| c.type_ == "Ready").and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
        let created = node.creation_timestamp().map(|t| t.0);
        [renewed, heartbeat, created].into_iter().flatten().max().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    async fn monitor(&self, node: &Node) -> kube::Result<()> {
        let name = node.name_any();
        let silent = Timestamp::now().duration_since(self.last_heard(node))
            > SignedDuration::try_from(self.grace).unwrap_or_default();
        let mut ready = ready_status(node).to_string();
        if silent && ready != "Unknown" {
            self.mark_unknown(node).await?;
            self.mark_pods_not_ready(&name).await?;
            ready = "Unknown".into();
        }
        self.set_condition_taints(node, &ready).await?;
        if ready != "True" {
            self.evict(node, &ready).await?;
        }
        Ok(())
    }

    async fn mark_unknown(&self, node: &Node) -> kube::Result<()> {
        let now = Time(Timestamp::now());
        let mut conditions: Vec<NodeCondition> =
            node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        for kind in KUBELET_CONDITIONS {
            let unknown = NodeCondition {
                type_: kind.to_string(),
                status: "Unknown".into(),
                reason: Some("NodeStatusUnknown".into()),
                message: Some("Kubelet stopped posting node status.".into()),
                last_heartbeat_time: conditions
                    .iter()
                    .find(|c| c.type_ == *kind)
                    .and_then(|c| c.last_heartbeat_time.clone()),
                last_transition_time: Some(now.clone()),
            };
            conditions.retain(|c| c.type_ != *kind);
            conditions.push(unknown);
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
        api.patch_status(&node.name_any(), &PatchParams::default(), &patch).await?;
        let message = format!("Node {} status is now: NodeNotReady", node.name_any());
        self.recorder.emit(node.object_ref(&()), EventType::Normal, "NodeNotReady", message);
        Ok(())
    }

    async fn pods_on(&self, node: &str) -> kube::Result<Vec<Pod>> {
        let api: Api<Pod> = Api::all(self.client.clone());
        Ok(api.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?.items)
    }

    /// Upstream's MarkPodsNotReady: the pods of an unreachable node are not Ready (so Services drop them).
    async fn mark_pods_not_ready(&self, node: &str) -> kube::Result<()> {
        for pod in self.pods_on(node).await? {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            if ready.is_none_or(|c| c.status != "True") {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let condition = json!({"type": "Ready", "status": "False", "lastProbeTime": null, "lastTransitionTime": Timestamp::now()});
            let patch = Patch::Strategic(json!({"status": {"conditions": [condition]}}));
            match api.patch_status(&pod.name_any(), &PatchParams::default(), &patch).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Makes the node's not-ready/unreachable taints match its Ready status, keeping every other taint.
    async fn set_condition_taints(&self, node: &Node, ready: &str) -> kube::Result<()> {
        let current: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let managed = |t: &Taint| t.key == NOT_READY || t.key == UNREACHABLE;
        let wanted = condition_taints(ready);
        let mut next: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
        for (key, effect) in &wanted {
            let kept = current.iter().find(|t| t.key == *key && t.effect == *effect).cloned();
            next.push(kept.unwrap_or_else(|| Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                value: None,
                time_added: (*effect == "NoExecute").then(|| Time(Timestamp::now())),
            }));
        }
        if next == current {
            return Ok(());
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let taints = if next.is_empty() { serde_json::Value::Null } else { json!(next) };
        let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": taints}});
        api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
    }

    /// Deletes the node's pods that do not tolerate its NoExecute taints, or whose tolerationSeconds
    /// have run out since the taint was added.
    async fn evict(&self, node: &Node, ready: &str) -> kube::Result<()> {
        let taints: Vec<Taint> = condition_taints(ready)
            .into_iter()
            .filter(|(_, effect)| *effect == "NoExecute")
            .map(|(key, effect)| {
                let existing = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .and_then(|ts| ts.iter().find(|t| t.key == key && t.effect == effect));
                existing.cloned().unwrap_or(Taint { key: key.into(), effect: effect.into(), ..Taint::default() })
            })
            .collect();
        let now = Timestamp::now();
        for pod in self.pods_on(&node.name_any()).await? {
            if pod.metadata.deletion_timestamp.is_some() || !evicted_by(&pod, &taints, now) {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    let message =
                        format!("Marking for deletion Pod {}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                    self.recorder.emit(pod.object_ref(&()), EventType::Normal, "TaintManagerEviction", message);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Upstream's pod GC of orphaned pods: a deleted node's pods go at once.
    async fn remove_pods_of(&self, node: &str) {
        let Ok(pods) = self.pods_on(node).await else { return };
        for pod in pods {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            if let Err(error) = api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await {
                tracing::debug!(%error, pod = pod.name_any(), "could not remove a pod of a deleted node");
            }
        }
    }
}

/// Whether the NoExecute `taints` evict the pod at `now`: one it does not tolerate, or the shortest
/// tolerationSeconds of the tolerations it uses has passed since the taint was added.
fn evicted_by(pod: &Pod, taints: &[Taint], now: Timestamp) -> bool {
    let tolerations = affinity::tolerations_of(pod);
    let mut deadline: Option<Timestamp> = None;
    for taint in taints {
        let used: Vec<_> = tolerations.iter().filter(|t| affinity::tolerates(t, taint)).collect();
        if used.is_empty() {
            return true;
        }
        let Some(seconds) = used.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let due = added + SignedDuration::from_secs(seconds.max(0));
        deadline = Some(deadline.map_or(due, |d| d.min(due)));
    }
    deadline.is_some_and(|due| due <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}),
        )
        .unwrap()
    }

    fn unreachable_since(seconds_ago: i64) -> Vec<Taint> {
        let added = Timestamp::now() - SignedDuration::from_secs(seconds_ago);
        vec![Taint { key: UNREACHABLE.into(), effect: "NoExecute".into(), value: None, time_added: Some(Time(added)) }]
    }

    #[test]
    fn eviction_waits_for_the_toleration_seconds() {
        let tolerating =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]));
        let now = Timestamp::now();
        assert!(!evicted_by(&tolerating, &unreachable_since(10), now));
        assert!(evicted_by(&tolerating, &unreachable_since(301), now));
        assert!(evicted_by(&pod(json!([])), &unreachable_since(0), now), "no toleration: at once");
        let forever = pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]));
        assert!(!evicted_by(&forever, &unreachable_since(100_000), now));
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        assert!(condition_taints("True").is_empty());
        assert_eq!(condition_taints("False"), [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]);
        assert_eq!(condition_taints("Unknown"), [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]);
    }
}
