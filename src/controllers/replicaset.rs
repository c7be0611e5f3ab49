//! ReplicaSet and ReplicationController controller (upstream's replicaset controller, which also runs
//! for ReplicationControllers; see [`Replicated`]): keeps `spec.replicas` active pods made from
//! the template, adopts matching pods nobody controls, releases owned pods whose labels stopped
//! matching, deletes surplus pods in upstream's order (unscheduled, pending, not ready, … first), and
//! reports status. Expectations (the pods it just created or deleted) hold the next sync back until the
//! pod cache has seen them, so a lagging cache never makes it create twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::replicated::Replicated;
use super::{claim, pods};

/// At most this many pods are created or deleted in one sync (upstream's burstReplicas).
const BURST: usize = 500;
/// Expectations not met by then are given up (the cache missed an event or a write failed silently).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Pods a sync created (by name) or deleted (by name and uid) that the cache has yet to show.
struct Expected {
    created: Vec<String>,
    deleted: Vec<(String, String)>,
    deadline: Instant,
}

struct Context<K: Replicated> {
    client: Client,
    pods: Store<Pod>,
    expectations: Mutex<HashMap<ObjectRef<K>, Expected>>,
}

/// Runs until the client's server goes away, following pods through the shared `pod_cache` and
/// `pod_events`.
pub async fn run<K: Replicated>(
    client: Client,
    pod_cache: Store<Pod>,
    pod_events: impl Stream<Item = Arc<Pod>> + Send + 'static,
) {
    let controller = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    let owners = controller.store();
    let context = Arc::new(Context { client, pods: pod_cache, expectations: Mutex::default() });
    controller
        .watches_shared_stream(pod_events, move |pod| claim::interested(&owners, pod.as_ref(), K::KIND, K::selector))
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile<K: Replicated>(rs: Arc<K>, context: Arc<Context<K>>) -> Result<Action, kube::Error> {
    let key = ObjectRef::from_obj(rs.as_ref());
    if !expectations_met(&context, &key) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let (Some(ns), Some(selector)) = (rs.namespace(), rs.selector()) else {
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &ns);
    let owned = claim::claim(rs.as_ref(), &selector, context.pods.state().into_iter(), &api, pods::is_active).await?;
    let mut active: Vec<&Pod> = owned.iter().map(AsRef::as_ref).filter(|p| pods::is_active(p)).collect();
    let wanted = rs.replicas().max(0) as usize;
    if rs.meta().deletion_timestamp.is_none() {
        if active.len() < wanted {
            let created = create_pods(rs.as_ref(), &api, (wanted - active.len()).min(BURST)).await;
            expect(&context, key.clone(), created.0, Vec::new());
            created.1?;
        } else if active.len() > wanted {
            pods::rank_for_deletion(&mut active);
            let surplus = &active[..(active.len() - wanted).min(BURST)];
            let deleted = delete_pods(&api, surplus).await;
            expect(&context, key.clone(), Vec::new(), deleted.0);
            deleted.1?;
        }
    }
    let min_ready = rs.min_ready_seconds();
    let status = status(rs.as_ref(), &owned, min_ready);
    if !status_is(rs.as_ref(), &status) {
        let owner_api: Api<K> = Api::namespaced(context.client.clone(), &ns);
        let patch = Patch::Merge(json!({ "status": status }));
        owner_api.patch_status(&rs.name_any(), &PatchParams::default(), &patch).await?;
    }
    // A pod ready but not yet available becomes available without an event: look again then.
    Ok(match pods::next_availability(owned.iter().map(AsRef::as_ref), min_ready) {
        Some(wait) => Action::requeue(wait),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// Creates up to `count` pods in batches of 1, 2, 4, … (upstream's slow start: a failing template
/// fails once, not `count` times). Returns the names created and the first error.
async fn create_pods<K: Replicated>(rs: &K, api: &Api<Pod>, count: usize) -> (Vec<String>, kube::Result<()>) {
    let pod = pods::from_template(rs.template(), &rs.name_any(), rs.controller_owner_ref(&()));
    let params = PostParams::default();
    let mut created = Vec::new();
    let mut batch = 1;
    while created.len() < count {
        let size = batch.min(count - created.len());
        let results = futures::future::join_all((0..size).map(|_| api.create(&params, &pod))).await;
        for result in results {
            match result {
                Ok(pod) => created.push(pod.name_any()),
                Err(e) => return (created, Err(e)),
            }
        }
        batch *= 2;
    }
    (created, Ok(()))
}

/// Deletes `surplus`; returns the names and uids deleted and the first error.
async fn delete_pods(api: &Api<Pod>, surplus: &[&Pod]) -> (Vec<(String, String)>, kube::Result<()>) {
    let (params, names): (DeleteParams, Vec<String>) =
        (DeleteParams::default(), surplus.iter().map(|p| p.name_any()).collect());
    let results = futures::future::join_all(names.iter().map(|name| api.delete(name, &params))).await;
    let mut deleted = Vec::new();
    for ((pod, name), result) in surplus.iter().zip(names).zip(results) {
        match result {
            Ok(_) => deleted.extend(pod.uid().map(|uid| (name, uid))),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return (deleted, Err(e)),
        }
    }
    (deleted, Ok(()))
}

fn expect<K: Replicated>(
    context: &Context<K>,
    key: ObjectRef<K>,
    created: Vec<String>,
    deleted: Vec<(String, String)>,
) {
    if created.is_empty() && deleted.is_empty() {
        return;
    }
    let expected = Expected { created, deleted, deadline: Instant::now() + EXPECTATION_TIMEOUT };
    context.expectations.lock().unwrap_or_else(|e| e.into_inner()).insert(key, expected);
}

/// Whether the pod cache shows every pod the last sync of `key` created, and none it deleted.
fn expectations_met<K: Replicated>(context: &Context<K>, key: &ObjectRef<K>) -> bool {
    let mut expectations = context.expectations.lock().unwrap_or_else(|e| e.into_inner());
    let Some(expected) = expectations.get(key) else {
        return true;
    };
    let ns = key.namespace.clone().unwrap_or_default();
    let cached = |name: &str| context.pods.get(&ObjectRef::new(name).within(&ns));
    let seen = |name: &String| cached(name).is_some();
    let gone = |(name, uid): &(String, String)| {
        cached(name).is_none_or(|p| p.uid().as_ref() != Some(uid) || p.metadata.deletion_timestamp.is_some())
    };
    let met = expected.created.iter().all(seen) && expected.deleted.iter().all(gone);
    if met || Instant::now() > expected.deadline {
        expectations.remove(key);
        return true;
    }
    false
}

/// The status a sync reports: counts over the active pods it controls (the same fields for both kinds).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Counts {
    replicas: i32,
    fully_labeled_replicas: i32,
    ready_replicas: i32,
    available_replicas: i32,
    observed_generation: Option<i64>,
}

fn status<K: Replicated>(rs: &K, owned: &[Arc<Pod>], min_ready_seconds: i32) -> Counts {
    let template_labels = rs.template().and_then(|t| t.metadata).and_then(|m| m.labels).unwrap_or_default();
    let active: Vec<&Pod> = owned.iter().map(AsRef::as_ref).filter(|p| pods::is_active(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    Counts {
        replicas: active.len() as i32,
        fully_labeled_replicas: count(&|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))),
        ready_replicas: count(&pods::is_ready),
        available_replicas: count(&|p| pods::is_available(p, min_ready_seconds, jiff::Timestamp::now())),
        observed_generation: rs.meta().generation,
    }
}

/// Whether the owner's status already reports `counts`.
fn status_is<K: Replicated>(owner: &K, counts: &Counts) -> bool {
    let reported = serde_json::to_value(owner).ok().and_then(|o| o.get("status").cloned()).unwrap_or_default();
    let field = |name: &str| reported.get(name).and_then(serde_json::Value::as_i64).unwrap_or(0) as i32;
    field("replicas") == counts.replicas
        && field("fullyLabeledReplicas") == counts.fully_labeled_replicas
        && field("readyReplicas") == counts.ready_replicas
        && field("availableReplicas") == counts.available_replicas
        && reported.get("observedGeneration").and_then(serde_json::Value::as_i64) == counts.observed_generation
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::json;

    fn rs(selector: serde_json::Value) -> ReplicaSet {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 3},
            "spec": {"selector": selector, "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}}}),
        )
        .expect("rs")
    }

    fn pod(labels: serde_json::Value, ready: bool) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "labels": labels},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}))
        .expect("pod")
    }

    #[test]
    fn status_counts_active_pods_by_label_and_readiness() {
        let owned =
            [pod(json!({"app": "web", "tier": "front"}), true), pod(json!({"app": "web"}), false)].map(Arc::new);
        let status = status(&rs(json!({"matchLabels": {"app": "web"}})), &owned, 0);
        assert_eq!(status.replicas, 2);
        assert_eq!(status.fully_labeled_replicas, 1);
        assert_eq!(status.ready_replicas, 1);
        assert_eq!(status.available_replicas, 1);
        assert_eq!(status.observed_generation, Some(3));
    }
}
