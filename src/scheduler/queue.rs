//! The scheduling queue (upstream's three queues): pods ready to try, by priority then arrival; pods
//! backing off after a failed bind (1 s doubling to 10 s); and pods no node fits, which wait for a change
//! to the cluster (a node added or changed, a pod gone) or at most a minute before they are tried again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried this long after their last attempt even if nothing seems to change.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// In the ready heap under this sequence number.
    Active(u64),
    /// Being scheduled or bound.
    InFlight,
    BackingOff(Instant),
    Unschedulable(Instant),
}

struct Pending {
    pod: Arc<Pod>,
    attempts: u32,
    state: State,
    /// Last failure, from which the backoff counts.
    failed_at: Option<Instant>,
}

#[derive(Default)]
pub struct Queue {
    ready: BinaryHeap<(i32, Reverse<u64>, String)>,
    /// When backing-off and unschedulable pods are due, soonest first; an entry whose pod has moved on
    /// since is skipped when it comes up.
    waiting: BinaryHeap<Reverse<(Instant, String)>>,
    pending: HashMap<String, Pending>,
    next_seq: u64,
}

impl State {
    /// When a waiting pod is due to be tried again.
    fn due(self) -> Option<Instant> {
        match self {
            State::BackingOff(until) => Some(until),
            State::Unschedulable(since) => Some(since + UNSCHEDULABLE_RETRY),
            State::Active(_) | State::InFlight => None,
        }
    }
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl Queue {
    fn activate(&mut self, key: &str) {
        let Some(entry) = self.pending.get_mut(key) else {
            return;
        };
        self.next_seq += 1;
        entry.state = State::Active(self.next_seq);
        self.ready.push((priority(&entry.pod), Reverse(self.next_seq), key.to_string()));
    }

    fn backoff(attempts: u32) -> Duration {
        let doubled = INITIAL_BACKOFF.saturating_mul(1u32 << attempts.saturating_sub(1).min(8));
        doubled.min(MAX_BACKOFF)
    }

    /// A pod that needs a node, new or changed. A changed unschedulable pod is tried again.
    pub fn upsert(&mut self, key: &str, pod: Arc<Pod>) {
        match self.pending.get_mut(key) {
            None => {
                self.pending
                    .insert(key.to_string(), Pending { pod, attempts: 0, state: State::InFlight, failed_at: None });
                self.activate(key);
            }
            Some(entry) => {
                let spec_changed = entry.pod.spec != pod.spec || entry.pod.metadata.labels != pod.metadata.labels;
                entry.pod = pod;
                if spec_changed && matches!(entry.state, State::Unschedulable(_)) {
                    self.activate(key);
                }
            }
        }
    }

    /// The pod no longer needs scheduling (bound, deleted, or no longer ours).
    pub fn remove(&mut self, key: &str) {
        self.pending.remove(key);
    }

    /// The next pod to try, if one is ready.
    pub fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        while let Some((_, Reverse(seq), key)) = self.ready.pop() {
            let Some(entry) = self.pending.get_mut(&key) else {
                continue;
            };
            if entry.state == State::Active(seq) {
                entry.state = State::InFlight;
                entry.attempts += 1;
                return Some((key, entry.pod.clone()));
            }
        }
        None
    }

    /// Puts a pending pod in a waiting `state`.
    fn wait(&mut self, key: &str, state: State) {
        if let (Some(entry), Some(due)) = (self.pending.get_mut(key), state.due()) {
            entry.state = state;
            self.waiting.push(Reverse((due, key.to_string())));
        }
    }

    /// No node fits the pod: it waits for the cluster to change.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        if let Some(entry) = self.pending.get_mut(key) {
            entry.failed_at = Some(now);
            self.wait(key, State::Unschedulable(now));
        }
    }

    /// Binding failed: try again after the backoff.
    pub fn retry(&mut self, key: &str, now: Instant) {
        if let Some(entry) = self.pending.get_mut(key) {
            entry.failed_at = Some(now);
            let until = now + Self::backoff(entry.attempts);
            self.wait(key, State::BackingOff(until));
        }
    }

    /// Forgets every pod not in `keep` (after a relist showed they are gone).
    pub fn retain(&mut self, keep: &std::collections::HashSet<String>) {
        self.pending.retain(|key, _| keep.contains(key));
    }

    /// Something changed that may let unschedulable pods fit: each is tried once its backoff ends.
    pub fn cluster_changed(&mut self) {
        let waiting: Vec<(String, Instant)> = self
            .pending
            .iter()
            .filter_map(|(key, entry)| match entry.state {
                State::Unschedulable(at) => {
                    Some((key.clone(), entry.failed_at.unwrap_or(at) + Self::backoff(entry.attempts)))
                }
                _ => None,
            })
            .collect();
        for (key, until) in waiting {
            self.wait(&key, State::BackingOff(until));
        }
    }

    /// Moves pods whose wait is over to the ready heap; returns when the next wait ends.
    pub fn flush(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((due, _))) = self.waiting.peek() {
            if *due > now {
                return Some(*due);
            }
            let Some(Reverse((due, key))) = self.waiting.pop() else { break };
            if self.pending.get(&key).and_then(|e| e.state.due()) == Some(due) {
                self.activate(&key);
            }
        }
        None
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "spec": {"priority": priority, "containers": []}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn higher_priority_first_then_arrival_order() {
        let mut q = Queue::default();
        q.upsert("a", pod(0));
        q.upsert("b", pod(10));
        q.upsert("c", pod(0));
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_their_backoff() {
        let mut q = Queue::default();
        let start = Instant::now();
        q.upsert("a", pod(0));
        q.pop().unwrap();
        q.unschedulable("a", start);
        assert_eq!(q.flush(start), Some(start + UNSCHEDULABLE_RETRY));
        assert!(q.pop().is_none());
        q.cluster_changed();
        assert_eq!(q.flush(start), Some(start + INITIAL_BACKOFF));
        q.flush(start + INITIAL_BACKOFF);
        assert_eq!(q.pop().map(|(k, _)| k).as_deref(), Some("a"));
    }

    #[test]
    fn a_changed_unschedulable_pod_is_tried_at_once_and_removed_pods_never() {
        let mut q = Queue::default();
        q.upsert("a", pod(0));
        q.upsert("b", pod(0));
        q.pop().unwrap();
        q.unschedulable("a", Instant::now());
        q.upsert("a", pod(5));
        q.remove("b");
        assert_eq!(q.pop().map(|(k, _)| k).as_deref(), Some("a"));
        assert!(q.pop().is_none());
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(Queue::backoff(1), Duration::from_secs(1));
        assert_eq!(Queue::backoff(3), Duration::from_secs(4));
        assert_eq!(Queue::backoff(30), MAX_BACKOFF);
    }
}
