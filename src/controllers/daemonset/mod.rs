//! DaemonSet controller (upstream's daemon controller): one pod on every node that should run it
//! (`placement.rs`), none elsewhere, a failed one replaced; RollingUpdate replaces pods of an older
//! template (told apart by the `controller-revision-hash` label) at most `maxUnavailable` at a time,
//! OnDelete only when a pod is deleted; and the status counts kubectl's `rollout status` reads. Nodes
//! joining, leaving or changing labels and taints trigger a sync of every DaemonSet. Each template is
//! kept as a ControllerRevision (`history.rs`), which `kubectl rollout history|undo` use.

mod placement;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::deployment::{plan, revision};
use super::history::{self, REVISION_LABEL};
use super::pod_control::{self, Expectations};
use super::{claim, pods};

struct Context {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    expectations: Expectations<DaemonSet>,
}

/// What of a node decides which daemons it runs.
fn placement_relevant(node: &Node) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    node.metadata.labels.hash(&mut hasher);
    serde_json::to_string(&node.spec.as_ref().map(|s| (&s.taints, s.unschedulable))).ok()?.hash(&mut hasher);
    Some(hasher.finish())
}

/// Runs until the client's server goes away, following pods through the shared `pod_cache` and
/// `pod_events`.
pub async fn run(client: Client, pod_cache: Store<Pod>, pod_events: impl Stream<Item = Arc<Pod>> + Send + 'static) {
    let (nodes, writer) = reflector::store();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .predicate_filter(placement_relevant, Default::default());
    let controller = Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default());
    let (sets, all_sets) = (controller.store(), controller.store());
    let context = Arc::new(Context { client, pods: pod_cache, nodes, expectations: Expectations::default() });
    controller
        .watches_shared_stream(pod_events, move |pod| claim::interested(&sets, pod.as_ref(), "DaemonSet", selector))
        .watches_stream(node_events, move |_| {
            all_sets.state().iter().map(|ds| ObjectRef::from_obj(ds.as_ref())).collect::<Vec<_>>()
        })
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn selector(ds: &DaemonSet) -> Option<kube::core::Selector> {
    claim::selector_of(&ds.spec.as_ref()?.selector)
}

/// The pod for the DaemonSet's current template, before it is pinned to a node.
fn template_pod(ds: &DaemonSet, hash: &str) -> Pod {
    let mut pod =
        pods::from_template(ds.spec.as_ref().map(|s| s.template.clone()), &ds.name_any(), claim::controller_ref(ds));
    pod.metadata.labels.get_or_insert_with(Default::default).insert(REVISION_LABEL.into(), hash.into());
    placement::add_tolerations(&mut pod);
    pod
}

async fn reconcile(ds: Arc<DaemonSet>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let key = ObjectRef::from_obj(ds.as_ref());
    if !context.expectations.met(&key, &context.pods) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let (Some(ns), Some(selector), Some(spec)) = (ds.namespace(), selector(&ds), ds.spec.as_ref()) else {
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &ns);
    let owned = claim::claim(ds.as_ref(), &selector, context.pods.state().into_iter(), &api, pods::is_active).await?;
    let hash = revision::template_hash(&spec.template, ds.status.as_ref().and_then(|s| s.collision_count));
    let in_use: BTreeSet<String> = owned
        .iter()
        .filter_map(|p| p.labels().get(REVISION_LABEL))
        .map(|h| history::revision_name(ds.as_ref(), h))
        .collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    history::record(&context.client, ds.as_ref(), &spec.template, &hash, limit, &in_use).await?;
    let template = template_pod(&ds, &hash);
    let nodes = context.nodes.state();
    let mut by_node: HashMap<String, Vec<&Pod>> = HashMap::new();
    for pod in owned.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        by_node.entry(placement::node_of(pod).unwrap_or_default()).or_default().push(pod);
    }
    let (mut create, mut delete) = (Vec::new(), Vec::<&Pod>::new());
    let eligible: Vec<&Node> =
        nodes.iter().map(AsRef::as_ref).filter(|n| placement::should_run(&template, n)).collect();
    let eligible_names: Vec<String> = eligible.iter().map(|n| n.name_any()).collect();
    for node in &eligible_names {
        match by_node.get(node).map(Vec::as_slice).unwrap_or_default() {
            [] => create.push(node.clone()),
            [only] if is_failed(only) => delete.push(only),
            [_keep, extra @ ..] => delete.extend(extra.iter().copied()),
        }
    }
    for (node, pods) in &by_node {
        if !eligible_names.contains(node) {
            delete.extend(pods.iter().copied());
        }
    }
    if ds.metadata.deletion_timestamp.is_none() {
        if spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("OnDelete") {
            delete.extend(outdated_to_replace(&ds, &hash, &eligible_names, &by_node, &delete));
        }
        let new_pods = create
            .iter()
            .map(|node| {
                let mut pod = template.clone();
                placement::pin(&mut pod, node);
                pod
            })
            .collect();
        let created = pod_control::create(&api, new_pods).await;
        let deleted = pod_control::delete(&api, &delete).await;
        context.expectations.expect(key, created.0, deleted.0);
        created.1?;
        deleted.1?;
    }
    let status = status(&ds, &hash, &eligible_names, &by_node);
    if ds.status.as_ref() != Some(&status) {
        let sets: Api<DaemonSet> = Api::namespaced(context.client.clone(), &ns);
        sets.patch_status(&ds.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    Ok(match pods::next_availability(owned.iter().map(AsRef::as_ref), min_ready) {
        Some(wait) => Action::requeue(wait),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

fn is_failed(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

fn is_current(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(REVISION_LABEL).map(String::as_str) == Some(hash)
}

/// Old-template pods to delete now: unavailable ones at once, then available ones while fewer than
/// maxUnavailable pods are unavailable.
fn outdated_to_replace<'a>(
    ds: &DaemonSet,
    hash: &str,
    eligible: &[String],
    by_node: &HashMap<String, Vec<&'a Pod>>,
    already: &[&Pod],
) -> Vec<&'a Pod> {
    let rolling = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let desired = eligible.len() as i32;
    let (_, max_unavailable) = plan::fenceposts(
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired,
    );
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let now = jiff::Timestamp::now();
    let on_node = |node: &String| by_node.get(node).and_then(|p| p.first().copied());
    let mut unavailable =
        eligible.iter().filter(|n| on_node(n).is_none_or(|p| !pods::is_available(p, min_ready, now))).count() as i32;
    let mut out = Vec::new();
    for node in eligible {
        let Some(pod) = on_node(node).filter(|p| !is_current(p, hash) && !already.iter().any(|a| a.uid() == p.uid()))
        else {
            continue;
        };
        if !pods::is_available(pod, min_ready, now) {
            out.push(pod);
        } else if unavailable < max_unavailable {
            unavailable += 1;
            out.push(pod);
        }
    }
    out
}

fn status(ds: &DaemonSet, hash: &str, eligible: &[String], by_node: &HashMap<String, Vec<&Pod>>) -> DaemonSetStatus {
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let now = jiff::Timestamp::now();
    let scheduled: BTreeMap<&String, &Pod> =
        eligible.iter().filter_map(|n| Some((n, by_node.get(n)?.first().copied()?))).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| scheduled.values().filter(|p| f(p)).count() as i32;
    let available = count(&|p| pods::is_available(p, min_ready, now));
    let misscheduled = by_node.iter().filter(|(n, p)| !eligible.contains(n) && !p.is_empty()).count() as i32;
    DaemonSetStatus {
        desired_number_scheduled: eligible.len() as i32,
        current_number_scheduled: scheduled.len() as i32,
        number_misscheduled: misscheduled,
        number_ready: count(&pods::is_ready),
        number_available: Some(available),
        number_unavailable: Some(eligible.len() as i32 - available),
        updated_number_scheduled: Some(count(&|p| is_current(p, hash))),
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}
