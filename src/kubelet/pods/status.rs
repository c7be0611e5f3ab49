//! The pod's status as upstream's kubelet computes it, from what the runtime shows: each container's
//! state (waiting with a reason, running, terminated with exit code and reason) and lastState,
//! restartCount, ready and started; the phase from those states and the restart policy; the
//! PodReadyToStartContainers, Initialized, ContainersReady and Ready conditions; podIP(s), hostIP and
//! qosClass. Pure: no I/O.

use std::collections::BTreeMap;

use k8s_cri::v1::{ContainerState, ContainerStatus};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

/// What the kubelet knows of one container of the pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    /// The newest attempt in the runtime.
    pub current: Option<ContainerStatus>,
    /// The attempt before it, for lastState.
    pub previous: Option<ContainerStatus>,
    /// Why it is not running, when the kubelet knows better than the runtime (CrashLoopBackOff,
    /// ErrImagePull, ContainerCreating…), with a message.
    pub waiting: Option<(String, String)>,
    /// Running, but its readiness (or startup) probe does not pass.
    pub unready: bool,
    /// Running, but its startup probe has not passed yet.
    pub unstarted: bool,
}

impl ContainerView {
    /// The view of a container's attempts (oldest first), waiting for `waiting` if given.
    pub fn of(mut history: Vec<ContainerStatus>, waiting: Option<(String, String)>) -> ContainerView {
        let current = history.pop();
        let previous = history.pop();
        ContainerView { current, previous, waiting, unready: false, unstarted: false }
    }

    pub fn restart_count(&self) -> i32 {
        self.current.as_ref().and_then(|c| c.metadata.as_ref()).map_or(0, |m| m.attempt as i32)
    }

    fn running(&self) -> bool {
        self.waiting.is_none()
            && self.current.as_ref().is_some_and(|c| c.state == ContainerState::ContainerRunning as i32)
    }

    /// Running and passing its readiness probe.
    pub fn ready(&self) -> bool {
        self.running() && !self.unready
    }

    /// Whether it ran to a zero exit (and is not about to run again).
    pub fn succeeded(&self) -> bool {
        self.waiting.is_none() && self.exited().is_some_and(|e| e.exit_code == 0)
    }

    fn exited(&self) -> Option<&ContainerStatus> {
        self.current.as_ref().filter(|c| c.state == ContainerState::ContainerExited as i32)
    }
}

/// Everything the status is computed from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub pod_ip: Option<String>,
    pub sandbox_ready: bool,
    pub host_ip: String,
    /// Whether every init container has succeeded.
    pub initialized: bool,
    pub init_containers: BTreeMap<String, ContainerView>,
    pub containers: BTreeMap<String, ContainerView>,
}

/// A time as the API writes it: RFC 3339 to the second.
fn api_time(t: jiff::Timestamp) -> Value {
    json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn time_of(nanos: i64) -> Value {
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map_or(Value::Null, api_time)
}

fn container_id(status: &ContainerStatus) -> String {
    format!("containerd://{}", status.id)
}

fn terminated(status: &ContainerStatus) -> Value {
    let reason = if status.reason.is_empty() {
        if status.exit_code == 0 { "Completed" } else { "Error" }.to_string()
    } else {
        status.reason.clone()
    };
    let mut state = json!({"exitCode": status.exit_code, "reason": reason, "startedAt": time_of(status.started_at),
        "finishedAt": time_of(status.finished_at), "containerID": container_id(status)});
    if !status.message.is_empty() {
        state["message"] = json!(status.message);
    }
    json!({"terminated": state})
}

fn container_status(container: &Container, view: &ContainerView) -> Value {
    let state = match (&view.waiting, &view.current) {
        (Some((reason, message)), _) => {
            let mut waiting = json!({"reason": reason});
            if !message.is_empty() {
                waiting["message"] = json!(message);
            }
            json!({"waiting": waiting})
        }
        (None, Some(c)) if c.state == ContainerState::ContainerRunning as i32 => {
            json!({"running": {"startedAt": time_of(c.started_at)}})
        }
        (None, Some(c)) if c.state == ContainerState::ContainerExited as i32 => terminated(c),
        _ => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    // lastState: the attempt before, or the current one when it ended and waits to restart.
    let last = match (&view.waiting, view.exited(), &view.previous) {
        (Some(_), Some(ended), _) => terminated(ended),
        (_, _, Some(previous)) => terminated(previous),
        _ => json!({}),
    };
    let running = view.running();
    let mut status = json!({
        "name": container.name,
        "image": container.image.clone().unwrap_or_default(),
        "imageID": view.current.as_ref().map(|c| c.image_ref.clone()).unwrap_or_default(),
        "ready": view.ready(),
        "started": running && !view.unstarted,
        "restartCount": view.restart_count(),
        "state": state,
        "lastState": last,
    });
    if let Some(current) = &view.current {
        status["containerID"] = json!(container_id(current));
    }
    status
}

/// Upstream's phase rules over the containers' states.
fn phase(restart_policy: &str, views: &[&ContainerView]) -> &'static str {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for view in views {
        if view.running() {
            running += 1;
        } else if let (None, Some(ended)) = (&view.waiting, view.exited()) {
            stopped += 1;
            succeeded += usize::from(ended.exit_code == 0);
        } else if view.exited().is_some() || view.previous.is_some() {
            stopped += 1; // waiting to restart after having run
        } else {
            waiting += 1;
        }
    }
    match () {
        _ if waiting > 0 => "Pending",
        _ if running > 0 => "Running",
        _ if stopped > 0 && restart_policy == "Always" => "Running",
        _ if stopped > 0 && stopped == succeeded => "Succeeded",
        _ if stopped > 0 && restart_policy == "Never" => "Failed",
        _ if stopped > 0 => "Running",
        _ => "Pending",
    }
}

/// Guaranteed, Burstable or BestEffort, from the containers' requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        let resources = container.resources.as_ref();
        let requests = resources.and_then(|r| r.requests.clone()).unwrap_or_default();
        let limits = resources.and_then(|r| r.limits.clone()).unwrap_or_default();
        any |= !requests.is_empty() || !limits.is_empty();
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            let request = requests.get(resource).or(limit);
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The status to post: computed fields only, for a strategic merge into what the API holds.
pub fn compute(pod: &Pod, observed: &Observed, now: jiff::Timestamp) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let empty = ContainerView::default();
    let views: Vec<&ContainerView> =
        spec.containers.iter().map(|c| observed.containers.get(&c.name).unwrap_or(&empty)).collect();
    let statuses: Vec<Value> = spec.containers.iter().zip(&views).map(|(c, v)| container_status(c, v)).collect();
    let init_containers = spec.init_containers.clone().unwrap_or_default();
    let not_reached = ContainerView::of(Vec::new(), Some(("PodInitializing".into(), String::new())));
    let init_statuses: Vec<Value> = init_containers
        .iter()
        .map(|c| {
            let view = observed.init_containers.get(&c.name).unwrap_or(&not_reached);
            let mut status = container_status(c, view);
            // An init container is ready once it has succeeded.
            status["ready"] = json!(view.succeeded());
            status
        })
        .collect();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_failed =
        observed.init_containers.values().any(|v| v.waiting.is_none() && v.exited().is_some_and(|e| e.exit_code != 0));
    let phase = match (observed.initialized, init_failed && restart_policy == "Never") {
        (true, _) => phase(restart_policy, &views),
        (false, true) => "Failed",
        (false, false) => "Pending",
    };
    let all_ready = !views.is_empty() && views.iter().all(|v| v.ready());
    let previous = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let condition = |kind: &str, holds: bool, reason: Option<&str>| {
        let status = if holds { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or_else(|| api_time(now), |t| api_time(t.0));
        let mut condition = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let (false, Some(reason)) = (holds, reason) {
            condition["reason"] = json!(reason);
        }
        condition
    };
    let not_ready: Vec<&str> =
        spec.containers.iter().zip(&views).filter(|(_, v)| !v.ready()).map(|(c, _)| c.name.as_str()).collect();
    let incomplete: Vec<&str> = init_containers
        .iter()
        .filter(|c| !observed.init_containers.get(&c.name).is_some_and(ContainerView::succeeded))
        .map(|c| c.name.as_str())
        .collect();
    let mut initialized = condition("Initialized", observed.initialized, Some("ContainersNotInitialized"));
    if !observed.initialized {
        initialized["message"] = json!(format!("containers with incomplete status: [{}]", incomplete.join(" ")));
    }
    let mut conditions = vec![
        condition("PodReadyToStartContainers", observed.sandbox_ready, None),
        initialized,
        condition("ContainersReady", all_ready, Some("ContainersNotReady")),
        condition("Ready", all_ready, Some("ContainersNotReady")),
    ];
    if !all_ready {
        let message = format!("containers with unready status: [{}]", not_ready.join(" "));
        conditions[2]["message"] = json!(message);
        conditions[3]["message"] = json!(message);
    }
    let start_time =
        pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map_or_else(|| api_time(now), |t| api_time(t.0));
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": statuses,
        "initContainerStatuses": init_statuses,
        "hostIP": observed.host_ip,
        "hostIPs": [{"ip": observed.host_ip}],
        "startTime": start_time,
        "qosClass": qos_class(pod),
    });
    if let Some(ip) = observed.pod_ip.as_ref().filter(|ip| !ip.is_empty()) {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::ContainerMetadata;

    fn pod(restart_policy: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"restartPolicy": restart_policy, "containers": [{"name": "app", "image": "tug.local/busybox:1"}]}}))
        .expect("pod")
    }

    fn cri(state: ContainerState, attempt: u32, exit_code: i32) -> ContainerStatus {
        ContainerStatus {
            id: format!("c{attempt}"),
            metadata: Some(ContainerMetadata { name: "app".into(), attempt }),
            state: state as i32,
            started_at: 1_700_000_000_000_000_000,
            finished_at: 1_700_000_010_000_000_000,
            exit_code,
            image_ref: "sha256:abc".into(),
            ..Default::default()
        }
    }

    fn observed(view: ContainerView) -> Observed {
        Observed {
            pod_ip: Some("10.42.0.9".into()),
            sandbox_ready: true,
            host_ip: "192.0.2.1".into(),
            initialized: true,
            init_containers: BTreeMap::new(),
            containers: BTreeMap::from([("app".to_string(), view)]),
        }
    }

    fn at() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("time")
    }

    #[test]
    fn a_running_container_makes_a_running_ready_pod() {
        let view = ContainerView { current: Some(cri(ContainerState::ContainerRunning, 0, 0)), ..Default::default() };
        let status = compute(&pod("Always"), &observed(view), at());
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["podIP"], "10.42.0.9");
        assert_eq!(status["containerStatuses"][0]["ready"], true);
        assert_eq!(status["containerStatuses"][0]["containerID"], "containerd://c0");
        assert_eq!(
            status["conditions"][3],
            json!({"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:00Z"})
        );
        assert_eq!(status["qosClass"], "BestEffort");
    }

    #[test]
    fn a_crash_loop_shows_the_last_exit_and_keeps_the_pod_running() {
        let view = ContainerView {
            current: Some(cri(ContainerState::ContainerExited, 3, 1)),
            previous: Some(cri(ContainerState::ContainerExited, 2, 1)),
            waiting: Some(("CrashLoopBackOff".into(), "back-off 40s restarting failed container".into())),
            ..Default::default()
        };
        let status = compute(&pod("Always"), &observed(view), at());
        let container = &status["containerStatuses"][0];
        assert_eq!(status["phase"], "Running");
        assert_eq!(container["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(container["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(container["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(container["restartCount"], 3);
        assert_eq!(status["conditions"][3]["status"], "False");
    }

    #[test]
    fn finished_containers_end_the_pod_by_exit_code_unless_it_restarts_always() {
        let done =
            |code| ContainerView { current: Some(cri(ContainerState::ContainerExited, 0, code)), ..Default::default() };
        assert_eq!(compute(&pod("Never"), &observed(done(0)), at())["phase"], "Succeeded");
        assert_eq!(compute(&pod("Never"), &observed(done(2)), at())["phase"], "Failed");
        assert_eq!(compute(&pod("OnFailure"), &observed(done(0)), at())["phase"], "Succeeded");
        let completed = compute(&pod("Never"), &observed(done(0)), at());
        assert_eq!(completed["containerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    }

    #[test]
    fn a_container_not_yet_created_keeps_the_pod_pending() {
        let creating =
            ContainerView { waiting: Some(("ContainerCreating".into(), String::new())), ..Default::default() };
        let status = compute(&pod("Always"), &observed(creating), at());
        assert_eq!(status["phase"], "Pending");
        assert_eq!(status["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating");
    }

    #[test]
    fn a_pod_waits_for_its_init_containers_and_fails_with_one_that_fails_when_it_never_restarts() {
        let mut pod = pod("Never");
        pod.spec.as_mut().expect("spec").init_containers =
            Some(vec![serde_json::from_value(json!({"name": "setup", "image": "tug.local/busybox:1"})).expect("init")]);
        let app_waits = ContainerView::of(Vec::new(), Some(("PodInitializing".into(), String::new())));
        let mut running = observed(app_waits);
        running.initialized = false;
        running.init_containers = BTreeMap::from([(
            "setup".to_string(),
            ContainerView::of(vec![cri(ContainerState::ContainerRunning, 0, 0)], None),
        )]);
        let status = compute(&pod, &running, at());
        assert_eq!(status["phase"], "Pending");
        assert_eq!(status["conditions"][1]["status"], "False");
        assert_eq!(status["conditions"][1]["message"], "containers with incomplete status: [setup]");
        assert_eq!(status["initContainerStatuses"][0]["state"]["running"]["startedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(status["containerStatuses"][0]["state"]["waiting"]["reason"], "PodInitializing");

        let mut failed = running.clone();
        failed.init_containers = BTreeMap::from([(
            "setup".to_string(),
            ContainerView::of(vec![cri(ContainerState::ContainerExited, 0, 1)], None),
        )]);
        assert_eq!(compute(&pod, &failed, at())["phase"], "Failed");
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        let with = |resources: Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "resources": resources}]}}),
            )
            .expect("pod")
        };
        assert_eq!(qos_class(&with(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&with(json!({"requests": {"cpu": "1"}}))), "Burstable");
        assert_eq!(qos_class(&with(json!({}))), "BestEffort");
    }
}
