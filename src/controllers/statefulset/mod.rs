//! StatefulSet controller (upstream's statefulset controller): pods `<set>-<ordinal>` for the ordinals
//! `[ordinals.start, start + replicas)` with their own claims (`identity.rs`). OrderedReady creates
//! them one at a time in ordinal order, each once the one before is Running and Ready, and removes
//! surplus ones from the highest ordinal down, one at a time; Parallel does both at once. RollingUpdate
//! replaces pods of an older template from the highest ordinal down to `partition`, one at a time,
//! waiting for each to be ready; OnDelete only when a pod is deleted. Templates are kept as
//! ControllerRevisions `<set>-<hash>` (`history.rs`): a pod below the partition that is recreated gets
//! the current revision's template, and `kubectl rollout history|undo` work. With
//! `persistentVolumeClaimRetentionPolicy.whenScaled: Delete` the claims of a pod scaled away are handed
//! to that pod, so the garbage collector removes them after it.

mod identity;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod, PodTemplateSpec};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::deployment::revision;
use super::history::{self, REVISION_LABEL};
use super::pod_control::{self, Expectations};
use super::{claim, pods};
use crate::events::{EventType, Recorder};

struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations<StatefulSet>,
    recorder: Arc<Recorder>,
}

/// Runs until the client's server goes away, following pods through the shared `pod_cache` and
/// `pod_events`.
pub async fn run(client: Client, pod_cache: Store<Pod>, pod_events: impl Stream<Item = Arc<Pod>> + Send + 'static) {
    let controller = Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let recorder = Recorder::new(client.clone(), "statefulset-controller");
    let context = Arc::new(Context { client, pods: pod_cache, expectations: Expectations::default(), recorder });
    controller
        .watches_shared_stream(pod_events, move |pod| claim::interested(&sets, pod.as_ref(), "StatefulSet", selector))
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn selector(set: &StatefulSet) -> Option<kube::core::Selector> {
    claim::selector_of(&set.spec.as_ref()?.selector)
}

fn reference(set: &StatefulSet) -> ObjectReference {
    let mut reference = set.object_ref(&());
    reference.resource_version = None;
    reference
}

fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && pods::is_ready(pod)
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_LABEL).map(String::as_str)
}

/// What one sync does: at most the pods to create (with their claims) and to delete.
#[derive(Default)]
struct Plan<'a> {
    create: Vec<i32>,
    delete: Vec<&'a Pod>,
}

async fn reconcile(set: Arc<StatefulSet>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let key = ObjectRef::from_obj(set.as_ref());
    if !context.expectations.met(&key, &context.pods) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let (Some(ns), Some(selector), Some(spec)) = (set.namespace(), selector(&set), set.spec.as_ref()) else {
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &ns);
    let owned = claim::claim(set.as_ref(), &selector, context.pods.state().into_iter(), &api, pods::is_active).await?;
    let hash = revision::template_hash(&spec.template, set.status.as_ref().and_then(|s| s.collision_count));
    let update_revision = history::revision_name(set.as_ref(), &hash);
    let in_use: BTreeSet<String> = owned.iter().filter_map(|p| revision_of(p).map(str::to_string)).collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    let revisions = history::record(&context.client, set.as_ref(), &spec.template, &hash, limit, &in_use).await?;
    let current = set.status.as_ref().and_then(|s| s.current_revision.clone()).filter(|c| *c != update_revision);
    let current = current.and_then(|name| {
        let template = revisions.iter().find(|r| r.name_any() == name).and_then(history::template_of)?;
        Some((name, template))
    });
    let mut by_ordinal: BTreeMap<i32, &Pod> = BTreeMap::new();
    for pod in &owned {
        if let Some(ordinal) = identity::ordinal_of(&set, pod) {
            by_ordinal.insert(ordinal, pod.as_ref());
        }
    }
    let plan = plan(&set, &by_ordinal, &update_revision);
    if set.metadata.deletion_timestamp.is_none() {
        let partition_start = partition_start(&set);
        let revision_for = |ordinal: i32| match &current {
            Some((name, template)) if ordinal < partition_start => (name.clone(), template.clone()),
            _ => (update_revision.clone(), spec.template.clone()),
        };
        apply(&context, &set, &api, &key, &plan, &revision_for).await?;
    }
    let status = status(&set, &by_ordinal, &update_revision);
    if set.status.as_ref() != Some(&status) {
        let sets: Api<StatefulSet> = Api::namespaced(context.client.clone(), &ns);
        sets.patch_status(&set.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The lowest ordinal a rolling update replaces: ordinals.start plus the partition.
fn partition_start(set: &StatefulSet) -> i32 {
    let partition = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    identity::wanted(set).start + partition.max(0)
}

/// Decides the creations and deletions of one sync.
fn plan<'a>(set: &StatefulSet, by_ordinal: &BTreeMap<i32, &'a Pod>, update_revision: &str) -> Plan<'a> {
    let spec = set.spec.as_ref();
    let wanted = identity::wanted(set);
    let parallel = spec.and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel");
    let mut plan = Plan::default();
    let terminating = by_ordinal.values().any(|p| p.metadata.deletion_timestamp.is_some());
    for ordinal in wanted.clone() {
        match by_ordinal.get(&ordinal) {
            None => {
                plan.create.push(ordinal);
                if !parallel {
                    return plan;
                }
            }
            Some(pod) if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") => {
                plan.delete.push(pod);
                if !parallel {
                    return plan;
                }
            }
            Some(pod) if !parallel && !running_and_ready(pod) => return plan,
            Some(_) => {}
        }
    }
    let condemned: Vec<&Pod> = by_ordinal.iter().rev().filter(|(o, _)| !wanted.contains(o)).map(|(_, p)| *p).collect();
    if !condemned.is_empty() {
        if parallel {
            plan.delete.extend(condemned.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()));
        } else if !terminating {
            plan.delete.push(condemned[0]);
        }
        return plan;
    }
    let rolling = spec.and_then(|s| s.update_strategy.as_ref()).is_none_or(|s| s.type_.as_deref() != Some("OnDelete"));
    let all_ready = wanted.clone().all(|o| by_ordinal.get(&o).is_some_and(|p| running_and_ready(p)));
    if rolling && all_ready && !terminating {
        let from = partition_start(set);
        let outdated = wanted.rev().filter(|o| *o >= from).filter_map(|o| by_ordinal.get(&o).copied());
        plan.delete.extend(outdated.filter(|p| revision_of(p) != Some(update_revision)).take(1));
    }
    plan
}

async fn apply(
    context: &Context,
    set: &StatefulSet,
    api: &Api<Pod>,
    key: &ObjectRef<StatefulSet>,
    plan: &Plan<'_>,
    revision_for: &(dyn Fn(i32) -> (String, PodTemplateSpec) + Sync),
) -> kube::Result<()> {
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(context.client.clone(), &set.namespace().unwrap_or_default());
    for &ordinal in &plan.create {
        for claim in identity::claims(set, ordinal) {
            let claim = identity::for_writing(claim);
            let created = super::ignore_conflict(claims.create(&PostParams::default(), &claim).await);
            created?;
        }
    }
    let new_pods = plan
        .create
        .iter()
        .map(|o| {
            let (revision, template) = revision_for(*o);
            identity::pod(set, *o, &revision, &template)
        })
        .collect();
    let created = pod_control::create(api, new_pods).await;
    if identity::claims_leave_with_scaled_pods(set) {
        for pod in plan
            .delete
            .iter()
            .filter(|p| identity::ordinal_of(set, p).is_some_and(|o| !identity::wanted(set).contains(&o)))
        {
            hand_claims_to(&claims, set, pod).await?;
        }
    }
    let deleted = pod_control::delete(api, &plan.delete).await;
    for name in &created.0 {
        let message = format!("create Pod {name} in StatefulSet {} successful", set.name_any());
        context.recorder.emit(reference(set), EventType::Normal, "SuccessfulCreate", message);
    }
    for (name, _) in &deleted.0 {
        let message = format!("delete Pod {name} in StatefulSet {} successful", set.name_any());
        context.recorder.emit(reference(set), EventType::Normal, "SuccessfulDelete", message);
    }
    context.expectations.expect(key.clone(), created.0, deleted.0);
    created.1?;
    deleted.1
}

/// `whenScaled: Delete`: the claims of a pod scaled away become the pod's alone, so the garbage
/// collector removes them once the pod is gone.
async fn hand_claims_to(claims: &Api<PersistentVolumeClaim>, set: &StatefulSet, pod: &Pod) -> kube::Result<()> {
    let Some(ordinal) = identity::ordinal_of(set, pod) else { return Ok(()) };
    let pod_ref = pod.owner_ref(&());
    for template in identity::claims(set, ordinal) {
        let Some(claim) = claims.get_opt(&template.name_any()).await? else { continue };
        let mut owners: Vec<_> =
            claim.owner_references().iter().filter(|o| Some(&o.uid) != set.uid().as_ref()).cloned().collect();
        owners.extend(pod_ref.clone().filter(|r| !owners.iter().any(|o| o.uid == r.uid)));
        if owners.as_slice() != claim.owner_references() {
            let patch = json!({"metadata": {"ownerReferences": owners, "resourceVersion": claim.resource_version()}});
            claims.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
    }
    Ok(())
}

fn status(set: &StatefulSet, by_ordinal: &BTreeMap<i32, &Pod>, update_revision: &str) -> StatefulSetStatus {
    let spec = set.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let now = jiff::Timestamp::now();
    let live: Vec<&Pod> = by_ordinal.values().copied().filter(|p| pods::is_active(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let updated = count(&|p| revision_of(p) == Some(update_revision));
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let previous = set.status.as_ref().and_then(|s| s.current_revision.clone());
    // The current revision becomes the update revision once every replica runs it.
    let current_revision = if updated == replicas && live.len() as i32 == replicas {
        update_revision.to_string()
    } else {
        previous.unwrap_or_else(|| update_revision.into())
    };
    StatefulSetStatus {
        replicas: live.len() as i32,
        ready_replicas: Some(count(&pods::is_ready)),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        current_replicas: Some(count(&|p| revision_of(p) == Some(current_revision.as_str()))),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(update_revision.into()),
        observed_generation: set.metadata.generation,
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn set(extra: Value) -> StatefulSet {
        let mut spec = json!({"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec})).expect("set")
    }

    fn pod(ordinal: i32, ready: bool, revision: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": format!("web-{ordinal}"), "labels": {REVISION_LABEL: revision}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
        .expect("pod")
    }

    fn names(plan: &Plan) -> (Vec<i32>, Vec<String>) {
        (plan.create.clone(), plan.delete.iter().map(|p| p.name_any()).collect())
    }

    #[test]
    fn ordered_ready_waits_for_each_pod_before_the_next() {
        let set = set(json!({}));
        let pods = [pod(0, false, "r")];
        let by: BTreeMap<i32, &Pod> = pods.iter().map(|p| (identity::ordinal_of(&set, p).unwrap_or(-1), p)).collect();
        assert_eq!(names(&plan(&set, &BTreeMap::new(), "r")), (vec![0], vec![]));
        assert_eq!(names(&plan(&set, &by, "r")), (vec![], vec![]), "web-0 is not ready yet");
        let pods = [pod(0, true, "r")];
        let by: BTreeMap<i32, &Pod> = pods.iter().map(|p| (0, p)).collect();
        assert_eq!(names(&plan(&set, &by, "r")), (vec![1], vec![]));
    }

    #[test]
    fn parallel_creates_all_and_scale_down_takes_the_highest_first() {
        assert_eq!(
            names(&plan(&set(json!({"podManagementPolicy": "Parallel"})), &BTreeMap::new(), "r")),
            (vec![0, 1, 2], vec![])
        );
        let pods = [pod(0, true, "r"), pod(1, true, "r"), pod(2, true, "r"), pod(3, true, "r"), pod(4, true, "r")];
        let by: BTreeMap<i32, &Pod> = pods.iter().enumerate().map(|(i, p)| (i as i32, p)).collect();
        assert_eq!(names(&plan(&set(json!({})), &by, "r")), (vec![], vec!["web-4".to_string()]));
    }

    #[test]
    fn rolling_updates_go_from_the_top_down_to_the_partition() {
        let pods = [pod(0, true, "old"), pod(1, true, "old"), pod(2, true, "old")];
        let by: BTreeMap<i32, &Pod> = pods.iter().enumerate().map(|(i, p)| (i as i32, p)).collect();
        assert_eq!(names(&plan(&set(json!({})), &by, "new")), (vec![], vec!["web-2".to_string()]));
        let partitioned = set(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}));
        let pods = [pod(0, true, "old"), pod(1, true, "old"), pod(2, true, "new")];
        let by: BTreeMap<i32, &Pod> = pods.iter().enumerate().map(|(i, p)| (i as i32, p)).collect();
        assert_eq!(names(&plan(&partitioned, &by, "new")), (vec![], vec![]), "below the partition stays");
    }
}
