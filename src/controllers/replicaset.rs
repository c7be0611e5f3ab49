//! ReplicaSet and ReplicationController controller (upstream's replicaset controller, which also runs
//! for ReplicationControllers; see [`Replicated`]): keeps `spec.replicas` active pods made from
//! the template, adopts matching pods nobody controls, releases owned pods whose labels stopped
//! matching, deletes surplus pods in upstream's order (unscheduled, pending, not ready, … first), and
//! reports status, creating and deleting through [`pod_control`] with its expectations.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::pod_control::{self, Expectations};
use super::replicated::Replicated;
use super::{claim, pods};

/// At most this many pods are created or deleted in one sync (upstream's burstReplicas).
const BURST: usize = 500;
struct Context<K: Replicated> {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations<K>,
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
    let context = Arc::new(Context { client, pods: pod_cache, expectations: Expectations::default() });
    controller
        .watches_shared_stream(pod_events, move |pod| claim::interested(&owners, pod.as_ref(), K::KIND, K::selector))
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile<K: Replicated>(rs: Arc<K>, context: Arc<Context<K>>) -> Result<Action, kube::Error> {
    let key = ObjectRef::from_obj(rs.as_ref());
    if !context.expectations.met(&key, &context.pods) {
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
            let pod = pods::from_template(rs.template(), &rs.name_any(), claim::controller_ref(rs.as_ref()));
            let created = pod_control::create(&api, vec![pod; (wanted - active.len()).min(BURST)]).await;
            context.expectations.expect(key.clone(), created.0, Vec::new());
            created.1?;
        } else if active.len() > wanted {
            pods::rank_for_deletion(&mut active);
            let surplus = &active[..(active.len() - wanted).min(BURST)];
            let deleted = pod_control::delete(&api, surplus).await;
            context.expectations.expect(key.clone(), Vec::new(), deleted.0);
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
