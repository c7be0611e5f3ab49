//! A Deployment's status as upstream computes it: replica counts summed over its ReplicaSets, the
//! Available condition (minimum availability), and the Progressing condition that `kubectl rollout
//! status` reads (new ReplicaSet created or progressing, rollout complete, paused or resumed, progress
//! deadline exceeded).

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

fn count(sets: &[&ReplicaSet], field: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>) -> i32 {
    sets.iter().filter_map(|rs| rs.status.as_ref()).filter_map(field).sum()
}

/// The counts and the Available condition, keeping the other conditions as they are.
pub fn calculate(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    max_unavailable: i32,
) -> DeploymentStatus {
    let replicas = super::revision::replicas(d);
    let available = count(all, |s| s.available_replicas);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(count(all, |s| Some(s.replicas))),
        updated_replicas: Some(new.map_or(0, |rs| count(&[rs], |s| Some(s.replicas)))),
        ready_replicas: Some(count(all, |s| s.ready_replicas)),
        available_replicas: Some(available),
        unavailable_replicas: Some((replicas - available).max(0)),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: d.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    let condition = if available >= replicas - max_unavailable {
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    set_condition(&mut status, condition);
    status
}

pub fn condition(kind: &str, status: &str, reason: &str, message: &str) -> DeploymentCondition {
    let now = Some(Time(Timestamp::now()));
    DeploymentCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: now.clone(),
        last_transition_time: now,
    }
}

pub fn get_condition<'a>(status: &'a DeploymentStatus, kind: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// Sets a condition; the same status and reason again changes nothing, and the same status keeps its
/// transition time (upstream's SetDeploymentCondition).
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|c| c.type_ == condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600);
    (deadline != i32::MAX).then_some(deadline)
}

/// Complete: every replica updated and available, none old left, generation observed.
pub fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = super::revision::replicas(d);
    status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
        && status.observed_generation >= d.metadata.generation
}

/// Whether `new` shows progress over `old` (more updated, ready or available replicas, or fewer old).
fn progressed(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |count: Option<i32>| count.unwrap_or(0);
    let old_pods = |s: &DeploymentStatus| n(s.replicas) - n(s.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || old_pods(new) < old_pods(old)
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Updates the Progressing condition of `next` (computed from `d`'s current status); returns how long
/// until the progress deadline would pass, if it is running.
pub fn progress(d: &Deployment, next: &mut DeploymentStatus, new: Option<&ReplicaSet>) -> Option<std::time::Duration> {
    let deadline = progress_deadline(d)?;
    let current = get_condition(next, "Progressing").cloned();
    let complete_already = next.replicas == next.updated_replicas
        && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if complete_already {
        return None;
    }
    let name = new.map(|rs| rs.name_any()).unwrap_or_default();
    let before = d.status.clone().unwrap_or_default();
    if is_complete(d, next) {
        let message = format!("ReplicaSet {name:?} has successfully progressed.");
        set_condition(next, condition("Progressing", "True", NEW_RS_AVAILABLE, &message));
        return None;
    }
    if progressed(&before, next) {
        let message = if new.is_some() {
            format!("ReplicaSet {name:?} is progressing.")
        } else {
            "Found new replica set".to_string()
        };
        let mut updated = condition("Progressing", "True", RS_UPDATED, &message);
        if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
            updated.last_transition_time = current.last_transition_time.clone();
        }
        // Progress refreshes the deadline even though status and reason may be unchanged.
        next.conditions.get_or_insert_with(Vec::new).retain(|c| c.type_ != "Progressing");
        next.conditions.get_or_insert_with(Vec::new).push(updated);
        return Some(std::time::Duration::from_secs(deadline as u64));
    }
    let current = current?;
    if current.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let since = current.last_update_time.as_ref().map_or(Timestamp::now(), |t| t.0);
    let due = since + SignedDuration::from_secs(i64::from(deadline));
    let now = Timestamp::now();
    if due <= now {
        let message = format!("ReplicaSet {name:?} has timed out progressing.");
        set_condition(next, condition("Progressing", "False", TIMED_OUT, &message));
        return None;
    }
    std::time::Duration::try_from(due.duration_since(now)).ok()
}

/// The Progressing condition says Paused while the Deployment is paused, and Resumed once it is not.
pub fn pause_condition(d: &Deployment, next: &mut DeploymentStatus) {
    if progress_deadline(d).is_none() {
        return;
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let shows_paused = get_condition(next, "Progressing").and_then(|c| c.reason.as_deref()) == Some(PAUSED);
    if paused && !shows_paused {
        set_condition(next, condition("Progressing", "Unknown", PAUSED, "Deployment is paused"));
    } else if !paused && shows_paused {
        set_condition(next, condition("Progressing", "Unknown", RESUMED, "Deployment is resumed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}, "status": status}))
        .unwrap()
    }

    fn rs(name: &str, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"selector": {}},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available}}))
        .unwrap()
    }

    #[test]
    fn counts_sum_over_replica_sets_and_availability_allows_max_unavailable() {
        let d = deployment(4, json!({}));
        let (old, new) = (rs("old", 2, 2, 2), rs("new", 2, 1, 1));
        let status = calculate(&d, &[&old, &new], Some(&new), 1);
        assert_eq!((status.replicas, status.updated_replicas, status.available_replicas), (Some(4), Some(2), Some(3)));
        assert_eq!(status.unavailable_replicas, Some(1));
        assert_eq!(get_condition(&status, "Available").map(|c| c.status.as_str()), Some("True"));
        let strict = calculate(&d, &[&old, &new], Some(&new), 0);
        assert_eq!(get_condition(&strict, "Available").map(|c| c.status.as_str()), Some("False"));
    }

    #[test]
    fn a_finished_rollout_reports_the_new_set_available() {
        let d = deployment(2, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2}));
        let new = rs("web-abc", 2, 2, 2);
        let mut next = calculate(&d, &[&new], Some(&new), 0);
        assert!(progress(&d, &mut next, Some(&new)).is_none());
        let cond = get_condition(&next, "Progressing").unwrap();
        assert_eq!(cond.reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert_eq!(cond.message.as_deref(), Some("ReplicaSet \"web-abc\" has successfully progressed."));
    }

    #[test]
    fn no_progress_past_the_deadline_times_out() {
        let long_ago = "2020-01-01T00:00:00Z";
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0,
            "conditions": [{"type": "Progressing", "status": "True", "reason": RS_UPDATED,
                "lastUpdateTime": long_ago, "lastTransitionTime": long_ago}]}),
        );
        let new = rs("web-abc", 1, 0, 0);
        let mut next = calculate(&d, &[&new], Some(&new), 0);
        progress(&d, &mut next, Some(&new));
        assert_eq!(get_condition(&next, "Progressing").and_then(|c| c.reason.as_deref()), Some(TIMED_OUT));
    }
}
