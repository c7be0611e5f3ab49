//! The Pod printer: READY, the aggregate STATUS (init progress, container waiting/terminated
//! reasons, sidecars, Terminating) and RESTARTS with the time of the last restart, as upstream's
//! printPod computes them.

use jiff::Timestamp;
use serde_json::Value;

use super::{age, at, col, deleting, human_signed, int_at, list_at, name, opt_bool, opt_str, parse_time, str_at};
use super::{wide, Column, Printer, AGE, NAME};

const POD_IP: &str =
    "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
const POD_NODE: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
const POD_NOMINATED: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
const POD_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";

const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", POD_IP),
    wide("Node", "string", POD_NODE),
    wide("Nominated Node", "string", POD_NOMINATED),
    wide("Readiness Gates", "string", POD_GATES),
];

pub(super) const POD: Printer = Printer { columns: COLUMNS, cells };

fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = summarize(pod);
    let restarts = match summary.last_restart {
        Some(t) if summary.restarts != 0 => {
            format!("{} ({} ago)", summary.restarts, human_signed(now.duration_since(t)))
        }
        _ => summary.restarts.to_string(),
    };
    let pod_ip = match str_at(pod, "/status/podIPs/0/ip") {
        "" => str_at(pod, "/status/podIP"),
        ip => ip,
    };
    vec![
        name(pod),
        Value::from(format!("{}/{}", summary.ready, summary.total)),
        Value::from(summary.reason),
        Value::from(restarts),
        age(pod, now),
        Value::from(or_none(pod_ip)),
        Value::from(or_none(str_at(pod, "/spec/nodeName"))),
        Value::from(or_none(str_at(pod, "/status/nominatedNodeName"))),
        Value::from(readiness_gates(pod)),
    ]
}

/// What printPod derives from the container statuses.
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

fn summarize(pod: &Value) -> Summary {
    let init_specs = list_at(pod, "/spec/initContainers");
    let is_sidecar = |c: &Value| str_at(c, "/restartPolicy") == "Always";
    let sidecar_named = |name: &str| init_specs.iter().any(|c| str_at(c, "/name") == name && is_sidecar(c));
    let conditions = list_at(pod, "/status/conditions");
    let phase = str_at(pod, "/status/phase");
    let status_reason = str_at(pod, "/status/reason");

    let reason = if status_reason.is_empty() { phase } else { status_reason };
    let mut s = Summary {
        ready: 0,
        total: list_at(pod, "/spec/containers").len() + init_specs.iter().filter(|c| is_sidecar(c)).count(),
        reason: reason.to_string(),
        restarts: 0,
        last_restart: None,
    };
    if conditions.iter().any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated") {
        s.reason = "SchedulingGated".to_string();
    }

    let (mut sidecar_restarts, mut last_sidecar_restart) = (0, None);
    let mut initializing = false;
    for (i, c) in list_at(pod, "/status/initContainerStatuses").iter().enumerate() {
        let finished = last_finished(c);
        s.restarts += int_at(c, "/restartCount");
        later(&mut s.last_restart, finished);
        let sidecar = sidecar_named(str_at(c, "/name"));
        if sidecar {
            sidecar_restarts += int_at(c, "/restartCount");
            later(&mut last_sidecar_restart, finished);
        }
        let terminated = at(c, "/state/terminated");
        let waiting = str_at(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && opt_bool(c, "/started") == Some(true) {
            if opt_bool(c, "/ready") == Some(true) {
                s.ready += 1;
            }
            continue;
        }
        s.reason = match terminated {
            Some(t) => terminated_reason(t, "Init:"),
            None if !waiting.is_empty() && waiting != "PodInitializing" => {
                format!("Init:{waiting}")
            }
            None => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    let initialized =
        conditions.iter().find(|c| str_at(c, "/type") == "Initialized").is_some_and(|c| str_at(c, "/status") == "True");
    if !initializing || initialized {
        s.restarts = sidecar_restarts;
        s.last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in list_at(pod, "/status/containerStatuses").iter().rev() {
            s.restarts += int_at(c, "/restartCount");
            later(&mut s.last_restart, last_finished(c));
            let waiting = str_at(c, "/state/waiting/reason");
            if !waiting.is_empty() {
                s.reason = waiting.to_string();
            } else if let Some(t) = at(c, "/state/terminated") {
                s.reason = terminated_reason(t, "");
            } else if opt_bool(c, "/ready") == Some(true) && at(c, "/state/running").is_some() {
                has_running = true;
                s.ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is still running.
        if s.reason == "Completed" && has_running {
            let ready = conditions.iter().any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
            s.reason = if ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    if deleting(pod) && status_reason == "NodeLost" {
        s.reason = "Unknown".to_string();
    } else if deleting(pod) && phase != "Succeeded" && phase != "Failed" {
        s.reason = "Terminating".to_string();
    }
    s
}

/// The reason of a terminated state: its reason, else `Signal:N` or `ExitCode:N`.
fn terminated_reason(t: &Value, prefix: &str) -> String {
    match (str_at(t, "/reason"), int_at(t, "/signal")) {
        ("", 0) => format!("{prefix}ExitCode:{}", int_at(t, "/exitCode")),
        ("", signal) => format!("{prefix}Signal:{signal}"),
        (reason, _) => format!("{prefix}{reason}"),
    }
}

/// When the container's previous run finished.
fn last_finished(status: &Value) -> Option<Timestamp> {
    parse_time(opt_str(status, "/lastState/terminated/finishedAt"))
}

/// Keeps the later of two times.
fn later(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if candidate > *latest {
        *latest = candidate;
    }
}

/// READINESS GATES: "true/total" of spec.readinessGates, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = list_at(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list_at(pod, "/status/conditions");
    let met = gates
        .iter()
        .filter(|g| {
            let wanted = str_at(g, "/conditionType");
            conditions.iter().find(|c| str_at(c, "/type") == wanted).is_some_and(|c| str_at(c, "/status") == "True")
        })
        .count();
    format!("{met}/{}", gates.len())
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2024-01-01T12:00:00Z";

    fn row(pod: Value) -> Vec<Value> {
        cells(&pod, NOW.parse().unwrap())
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": "2024-01-01T11:00:00Z"}}})
    }

    fn base(statuses: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": "2024-01-01T11:00:00Z"},
               "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
               "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": statuses,
                          "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn running_pod() {
        let r = row(base(json!([running("a", true, 0), running("b", false, 0)])));
        assert_eq!(&r[..5], &[json!("web"), json!("1/2"), json!("Running"), json!("0"), json!("60m")]);
        assert_eq!(&r[5..], &[json!("10.0.0.5"), json!("n1"), json!("<none>"), json!("<none>")]);
    }

    #[test]
    fn crash_loop_back_off_with_restart_age() {
        let crashing = json!({"name": "b", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:55:00Z"}}});
        let r = row(base(json!([running("a", true, 0), crashing])));
        assert_eq!(r[1], json!("1/2"));
        assert_eq!(r[2], json!("CrashLoopBackOff"));
        assert_eq!(r[3], json!("5 (5m ago)"));
    }

    #[test]
    fn init_containers_in_progress_and_failed() {
        let mut pod = base(json!([{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]));
        pod["spec"]["initContainers"] = json!([{"name": "init"}]);
        pod["status"]["phase"] = json!("Pending");
        pod["status"]["initContainerStatuses"] = json!([{"name": "init", "restartCount": 0, "state": {"running": {}}}]);
        assert_eq!(row(pod.clone())[2], json!("Init:0/1"));
        pod["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 2}});
        assert_eq!(row(pod.clone())[2], json!("Init:ExitCode:2"));
        pod["status"]["initContainerStatuses"][0]["state"] = json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(row(pod)[2], json!("Init:ImagePullBackOff"));
    }

    #[test]
    fn sidecar_counts_toward_ready_and_total() {
        let mut pod = base(json!([running("a", true, 1), running("b", true, 0)]));
        pod["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        pod["status"]["initContainerStatuses"] =
            json!([{"name": "proxy", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}}}]);
        let r = row(pod);
        assert_eq!(r[1], json!("3/3"));
        assert_eq!(r[2], json!("Running"));
        assert_eq!(r[3], json!("3"));
    }

    #[test]
    fn terminating_and_node_lost() {
        let mut pod = base(json!([running("a", true, 0), running("b", true, 0)]));
        pod["metadata"]["deletionTimestamp"] = json!("2024-01-01T11:59:00Z");
        assert_eq!(row(pod.clone())[2], json!("Terminating"));
        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(row(pod.clone())[2], json!("Unknown"));
        pod["status"]["reason"] = json!(null);
        pod["status"]["phase"] = json!("Succeeded");
        pod["status"]["containerStatuses"] = json!([]);
        assert_eq!(row(pod)[2], json!("Succeeded"));
    }

    #[test]
    fn completed_and_partially_completed() {
        let done = json!({"name": "b", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let mut pod = base(json!([done.clone(), done.clone()]));
        pod["status"]["phase"] = json!("Succeeded");
        pod["status"]["conditions"] = json!([]);
        assert_eq!(row(pod)[..3], [json!("web"), json!("0/2"), json!("Completed")]);
        // The first container (printed last) completed while the other one still runs.
        let pod = base(json!([done, running("b", true, 0)]));
        assert_eq!(row(pod)[2], json!("Running"));
    }

    #[test]
    fn gated_signal_and_readiness_gates() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}],
            "readinessGates": [{"conditionType": "x/ok"}, {"conditionType": "x/lb"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                                                         {"type": "x/ok", "status": "True"}]}});
        let r = row(pod.clone());
        assert_eq!(
            (r[2].clone(), r[4].clone(), r[8].clone()),
            (json!("SchedulingGated"), json!("<unknown>"), json!("1/2"))
        );
        pod["status"]["containerStatuses"] =
            json!([{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]);
        assert_eq!(row(pod)[2], json!("Signal:9"));
    }
}
