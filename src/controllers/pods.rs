//! What the workload controllers ask of pods, with upstream's rules: whether a pod is active, ready or
//! available, the order surplus pods are deleted in, and a pod made from a template.

use std::cmp::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Not finished and not being deleted (upstream's IsPodActive).
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Since when the pod has been Ready; None when it is not.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| since + jiff::SignedDuration::from_secs(min_ready_seconds.into()) <= now)
}

/// How long until the next of `pods` that is ready but not yet available becomes available.
pub fn next_availability<'a>(pods: impl Iterator<Item = &'a Pod>, min_ready_seconds: i32) -> Option<Duration> {
    let now = Timestamp::now();
    pods.filter(|p| is_active(p))
        .filter_map(ready_since)
        .map(|since| since + jiff::SignedDuration::from_secs(min_ready_seconds.into()))
        .filter(|at| *at > now)
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default())
        .min()
}

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.map_or(0, |all| all.iter().map(|c| c.restart_count).max().unwrap_or(0))
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Running" => 2,
        _ => 1,
    }
}

/// Orders pods so that the ones to delete first come first (upstream's ActivePods ordering):
/// unscheduled before scheduled, pending before unknown before running, not ready before ready, ready
/// for less time before longer, more restarts before fewer, newer before older.
pub fn rank_for_deletion(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| deletion_order(a, b));
}

fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

/// A pod from `template`, named `<prefix>-<random>` and controlled by `owner`.
pub fn from_template(template: Option<PodTemplateSpec>, prefix: &str, owner: Option<OwnerReference>) -> Pod {
    let template = template.unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_at: Option<&str>, restarts: i32, created: &str) -> Pod {
        let conditions =
            ready_at.map_or(json!([]), |t| json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]));
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": ready_at.is_some(),
                                              "restartCount": restarts}]}
        }))
        .expect("pod")
    }

    #[test]
    fn surplus_pods_go_in_upstreams_order() {
        let t = "2024-01-01T00:00:00Z";
        let pods = [
            pod("ready-long", Some("n"), "Running", Some("2024-01-01T00:00:00Z"), 0, t),
            pod("ready-recent", Some("n"), "Running", Some("2024-01-02T00:00:00Z"), 0, t),
            pod("unscheduled", None, "Pending", None, 0, t),
            pod("pending", Some("n"), "Pending", None, 0, t),
            pod("not-ready-restarting", Some("n"), "Running", None, 5, t),
            pod("not-ready-new", Some("n"), "Running", None, 0, "2024-02-01T00:00:00Z"),
            pod("not-ready-old", Some("n"), "Running", None, 0, t),
        ];
        let mut ranked: Vec<&Pod> = pods.iter().collect();
        rank_for_deletion(&mut ranked);
        let names: Vec<String> = ranked.iter().map(|p| p.name_any()).collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "not-ready-restarting",
                "not-ready-new",
                "not-ready-old",
                "ready-recent",
                "ready-long"
            ]
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", Some("n"), "Running", Some("2024-01-01T00:00:00Z"), 0, "2024-01-01T00:00:00Z");
        let at = |s: &str| s.parse::<Timestamp>().expect("time");
        assert!(!is_available(&p, 10, at("2024-01-01T00:00:05Z")));
        assert!(is_available(&p, 10, at("2024-01-01T00:00:10Z")));
        assert!(is_active(&p) && is_ready(&p));
    }

    #[test]
    fn template_pods_are_controlled_and_generated() {
        let owner = OwnerReference { controller: Some(true), name: "web".into(), ..Default::default() };
        let pod = from_template(None, "web-abc", Some(owner));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(super::super::claim::controller_of(&pod).map(|o| o.name.as_str()), Some("web"));
    }
}
