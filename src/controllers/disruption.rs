//! Disruption controller (upstream's disruption controller): keeps each PodDisruptionBudget's status —
//! how many of its pods are expected, how many must stay healthy, how many are, and so how many may be
//! disrupted now — which the `pods/eviction` subresource spends. Pods an eviction recorded in
//! `disruptedPods` count as gone until they are, or until two minutes pass without their deletion.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{claim, pods};

/// An eviction not followed by the pod's deletion within this long is taken back.
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

struct Context {
    client: Client,
    pods: Store<Pod>,
}

/// Runs until the client's server goes away, following pods through the shared `pod_cache` and
/// `pod_events`.
pub async fn run(client: Client, pod_cache: Store<Pod>, pod_events: impl Stream<Item = Arc<Pod>> + Send + 'static) {
    let controller = Controller::new(Api::<PodDisruptionBudget>::all(client.clone()), watcher::Config::default());
    let budgets = controller.store();
    let context = Arc::new(Context { client, pods: pod_cache });
    controller
        .watches_shared_stream(pod_events, move |pod| claim::selecting(&budgets, pod.as_ref(), selector))
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn selector(budget: &PodDisruptionBudget) -> Option<Selector> {
    claim::selector_of(budget.spec.as_ref()?.selector.as_ref()?)
}

async fn reconcile(budget: Arc<PodDisruptionBudget>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let ns = budget.namespace().unwrap_or_default();
    let selected: Vec<Arc<Pod>> = match selector(&budget) {
        Some(selector) => context
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selector.matches(p.labels()))
            .collect(),
        None => Vec::new(),
    };
    let now = Timestamp::now();
    let (status, recheck) = match expected_and_desired(&budget, &selected, &context.client, &ns).await {
        Ok((expected, desired)) => computed_status(&budget, &selected, expected, desired, now),
        Err(message) => (failed_status(&budget, &message, now), None),
    };
    if budget.status.as_ref().map(comparable) != Some(comparable(&status)) {
        let api: Api<PodDisruptionBudget> = Api::namespaced(context.client.clone(), &ns);
        let patch = Patch::Merge(json!({"status": status}));
        api.patch_status(&budget.name_any(), &PatchParams::default(), &patch).await?;
    }
    Ok(recheck.map_or_else(Action::await_change, Action::requeue))
}

/// A status without its transition times, to tell whether anything changed.
fn comparable(status: &PodDisruptionBudgetStatus) -> PodDisruptionBudgetStatus {
    let mut status = status.clone();
    for condition in status.conditions.iter_mut().flatten() {
        condition.last_transition_time = Time(Timestamp::UNIX_EPOCH);
    }
    status
}

/// How many pods the budget expects, and how many of them must be healthy (upstream's rules: an
/// integer minAvailable counts the selected pods; a percentage or maxUnavailable counts the replicas
/// their controllers want).
async fn expected_and_desired(
    budget: &PodDisruptionBudget,
    selected: &[Arc<Pod>],
    client: &Client,
    ns: &str,
) -> Result<(i32, i32), String> {
    let spec = budget.spec.as_ref();
    if let Some(max_unavailable) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let expected = expected_scale(selected, client, ns).await?;
        let unavailable = scaled(max_unavailable, expected)?;
        return Ok((expected, (expected - unavailable).max(0)));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(min)) => Ok((selected.len() as i32, *min)),
        Some(percent @ IntOrString::String(_)) => {
            let expected = expected_scale(selected, client, ns).await?;
            Ok((expected, scaled(percent, expected)?))
        }
        None => Ok((0, 0)),
    }
}

/// An integer as is, or a percentage of `total` rounded up.
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(|| {
                format!("invalid value for IntOrString: invalid value {s:?}: must be an integer or a percentage")
            })?;
            Ok(((percent * i64::from(total) + 99) / 100).clamp(0, i64::from(i32::MAX)) as i32)
        }
    }
}

/// The replicas wanted by the controllers of the selected pods, each counted once (a ReplicaSet of a
/// Deployment counts as the Deployment).
async fn expected_scale(selected: &[Arc<Pod>], client: &Client, ns: &str) -> Result<i32, String> {
    let mut controllers = BTreeSet::new();
    for pod in selected.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let Some(owner) = claim::controller_of(pod.as_ref()) else {
            return Err(format!("found no controllers for pod {:?}", pod.name_any()));
        };
        controllers.insert((owner.kind.clone(), owner.name.clone()));
    }
    let mut total = 0i32;
    let mut counted = BTreeSet::new();
    for (kind, name) in controllers {
        let (kind, name, replicas) = replicas_of(client, ns, &kind, &name).await?;
        if counted.insert((kind, name)) {
            total = total.saturating_add(replicas);
        }
    }
    Ok(total)
}

/// The kind, name and wanted replicas of a pod's controller, resolved up to its Deployment.
async fn replicas_of(client: &Client, ns: &str, kind: &str, name: &str) -> Result<(String, String, i32), String> {
    let missing = |e: kube::Error| format!("could not read {kind} {name:?}: {e}");
    let replicas = match kind {
        "ReplicaSet" => {
            let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns).get(name).await.map_err(missing)?;
            if let Some(owner) = claim::controller_of(&rs).filter(|o| o.kind == "Deployment") {
                let api = Api::<Deployment>::namespaced(client.clone(), ns);
                let deployment = api.get(&owner.name).await.map_err(missing)?;
                let replicas = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
                return Ok(("Deployment".into(), owner.name.clone(), replicas));
            }
            rs.spec.and_then(|s| s.replicas).unwrap_or(1)
        }
        "StatefulSet" => {
            let set = Api::<StatefulSet>::namespaced(client.clone(), ns).get(name).await.map_err(missing)?;
            set.spec.and_then(|s| s.replicas).unwrap_or(1)
        }
        "ReplicationController" => {
            let rc = Api::<ReplicationController>::namespaced(client.clone(), ns).get(name).await.map_err(missing)?;
            rc.spec.and_then(|s| s.replicas).unwrap_or(1)
        }
        other => return Err(format!("pods controlled by a {other} have no scale a budget can use")),
    };
    Ok((kind.to_string(), name.to_string(), replicas))
}

/// The status from the counts; and when to look again (an eviction record expiring).
fn computed_status(
    budget: &PodDisruptionBudget,
    selected: &[Arc<Pod>],
    expected: i32,
    desired: i32,
    now: Timestamp,
) -> (PodDisruptionBudgetStatus, Option<Duration>) {
    let recorded = budget.status.as_ref().and_then(|s| s.disrupted_pods.clone()).unwrap_or_default();
    let alive: BTreeMap<String, &Pod> = selected
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), p.as_ref()))
        .collect();
    let disrupted: BTreeMap<String, Time> =
        recorded.into_iter().filter(|(name, at)| alive.contains_key(name) && at.0 + DELETION_TIMEOUT > now).collect();
    let healthy = alive.iter().filter(|(name, pod)| pods::is_ready(pod) && !disrupted.contains_key(*name)).count();
    let healthy = healthy as i32;
    let allowed = if expected <= 0 { 0 } else { (healthy - desired).max(0) };
    let recheck = disrupted
        .values()
        .map(|at| Duration::try_from((at.0 + DELETION_TIMEOUT).duration_since(now)).unwrap_or_default())
        .min();
    let (state, reason) = if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: budget.metadata.generation,
        conditions: Some(vec![condition(budget, state, reason, "", now)]),
    };
    (status, recheck)
}

/// The status when the counts cannot be known: no disruptions, and why.
fn failed_status(budget: &PodDisruptionBudget, message: &str, now: Timestamp) -> PodDisruptionBudgetStatus {
    let previous = budget.status.clone().unwrap_or_default();
    PodDisruptionBudgetStatus {
        disruptions_allowed: 0,
        observed_generation: budget.metadata.generation,
        conditions: Some(vec![condition(budget, "False", "SyncFailed", message, now)]),
        ..previous
    }
}

/// The DisruptionAllowed condition, keeping its transition time while its status holds.
fn condition(budget: &PodDisruptionBudget, status: &str, reason: &str, message: &str, now: Timestamp) -> Condition {
    let previous = budget.status.as_ref().and_then(|s| s.conditions.as_ref());
    let previous = previous.and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed"));
    let since = previous.filter(|c| c.status == status).map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: "DisruptionAllowed".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: budget.metadata.generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool) -> Arc<Pod> {
        let status = if ready { "True" } else { "False" };
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": status, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}))
            .expect("pod"),
        )
    }

    fn budget(disrupted: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "web", "generation": 2},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptedPods": disrupted, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0, "disruptionsAllowed": 0}}))
        .expect("pdb")
    }

    #[test]
    fn healthy_pods_above_the_minimum_may_be_disrupted() {
        let pods = [pod("a", true), pod("b", true), pod("c", true), pod("d", false)];
        let (status, recheck) = computed_status(&budget(json!({})), &pods, 4, 2, Timestamp::now());
        assert_eq!((status.current_healthy, status.desired_healthy, status.expected_pods), (3, 2, 4));
        assert_eq!(status.disruptions_allowed, 1);
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.conditions.unwrap()[0].reason, "SufficientPods");
        assert!(recheck.is_none());
    }

    #[test]
    fn evicted_pods_count_as_gone_until_the_timeout() {
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().expect("time");
        let pods = [pod("a", true), pod("b", true), pod("c", true)];
        let recorded = json!({"a": "2024-01-01T00:00:30Z", "old": "2024-01-01T00:00:00Z", "b": "2023-12-31T00:00:00Z"});
        let (status, recheck) = computed_status(&budget(recorded), &pods, 3, 2, now);
        assert_eq!(
            status.disrupted_pods.as_ref().map(|d| d.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["a".into()])
        );
        assert_eq!(status.current_healthy, 2);
        assert_eq!(status.disruptions_allowed, 0);
        assert_eq!(status.conditions.unwrap()[0].reason, "InsufficientPods");
        assert_eq!(recheck, Some(Duration::from_secs(90)));
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 5), Ok(3));
        assert_eq!(scaled(&IntOrString::Int(2), 5), Ok(2));
        assert!(scaled(&IntOrString::String("half".into()), 5).is_err());
    }
}
