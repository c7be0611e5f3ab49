//! What the simulated kubelets do with the pods bound to their nodes: after the start delay a pod is
//! Running and Ready with an address from its node's podCIDR; a pod that exits (one of a Job, or one
//! annotated `tug.dev/simulate-exit-code`) ends Succeeded or Failed after its run time; a pod annotated
//! `tug.dev/simulate-ready: "false"` runs but is not ready; a pod being deleted is removed at once, as a
//! kubelet does once its containers are stopped.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::Fleet;

/// Makes a pod exit with this code (a number) after its run time.
const EXIT_CODE_ANNOTATION: &str = "tug.dev/simulate-exit-code";
/// How long such a pod runs, in seconds (overrides --run-time).
const RUN_SECONDS_ANNOTATION: &str = "tug.dev/simulate-run-seconds";
/// `"false"` keeps a running pod not ready (as a failing readiness probe would); changing it later
/// changes the pod's readiness.
const READY_ANNOTATION: &str = "tug.dev/simulate-ready";
/// Status writes in flight at once.
const CONCURRENCY: usize = 128;
/// A failed write is tried again after this, doubling up to the cap, until the pod is gone.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(30);

struct Kubelets {
    client: Client,
    fleet: Arc<Fleet>,
    nodes: Store<Node>,
    /// Pods (by uid) whose start, run or deletion is under way.
    handled: Mutex<HashSet<String>>,
    /// The next address to hand out per node.
    next_address: Mutex<HashMap<String, u32>>,
    writes: Semaphore,
}

/// Watches every pod and acts on those bound to the fleet's nodes. Runs until the watch ends.
pub async fn run(client: Client, fleet: Arc<Fleet>, nodes: Store<Node>) {
    let ours: HashSet<String> = fleet.node_names().collect();
    let kubelets = Arc::new(Kubelets {
        client: client.clone(),
        fleet,
        nodes,
        handled: Mutex::default(),
        next_address: Mutex::default(),
        writes: Semaphore::new(CONCURRENCY),
    });
    let mut relisted = HashSet::new();
    watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(watcher::Event::Init) => relisted.clear(),
                Ok(watcher::Event::InitDone) => {
                    // Pods deleted while the watch was down never sent their Delete: forget them now.
                    let mut handled = kubelets.handled.lock().unwrap_or_else(|e| e.into_inner());
                    handled.retain(|key| relisted.contains(key.trim_end_matches("/delete")));
                }
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    relisted.extend(pod.uid());
                    if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| ours.contains(n)) {
                        kubelets.clone().observe(pod);
                    }
                }
                Ok(watcher::Event::Delete(pod)) => {
                    let uid = pod.uid().unwrap_or_default();
                    let mut handled = kubelets.handled.lock().unwrap_or_else(|e| e.into_inner());
                    handled.remove(&format!("{uid}/delete"));
                    handled.remove(&uid);
                }
                Err(error) => tracing::debug!(%error, "simulator pod watch"),
            }
            futures::future::ready(())
        })
        .await;
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// The exit code the pod's containers end with, if they end at all.
fn exit_code(pod: &Pod) -> Option<i32> {
    if let Some(code) = pod.annotations().get(EXIT_CODE_ANNOTATION) {
        return code.trim().parse().ok();
    }
    let of_job = pod.owner_references().iter().any(|o| o.controller == Some(true) && o.kind == "Job");
    of_job.then_some(0)
}

impl Kubelets {
    fn observe(self: Arc<Self>, pod: Pod) {
        let uid = pod.uid().unwrap_or_default();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let finished = matches!(phase(&pod), "Succeeded" | "Failed");
        if finished && !terminating {
            return;
        }
        let running = phase(&pod) == "Running";
        if running && !terminating && crate::controllers::pods::is_ready(&pod) != wants_ready(&pod) {
            tokio::spawn(async move { self.write_status(&pod, readiness_status(&pod, jiff::Timestamp::now())).await });
            return;
        }
        if running && exit_code(&pod).is_none() && !terminating {
            return;
        }
        let key = if terminating { format!("{uid}/delete") } else { uid };
        if !self.handled.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone()) {
            return;
        }
        tokio::spawn(async move {
            if terminating {
                self.delete(&pod).await
            } else {
                self.start_and_run(&pod, running).await
            }
        });
    }

    fn api(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
    }

    /// Runs `write` until it succeeds or finds the pod gone (404, or 409 for a namesake), backing off
    /// between failures, with at most `CONCURRENCY` writes in flight.
    async fn persist<F: std::future::Future<Output = Result<(), kube::Error>>>(
        &self,
        pod: &Pod,
        write: impl Fn() -> F,
    ) {
        let mut delay = RETRY_FIRST;
        loop {
            let result = {
                let _permit = self.writes.acquire().await;
                write().await
            };
            match result {
                Ok(()) => return,
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => return,
                Err(error) => {
                    tracing::debug!(%error, pod = pod.name_any(), "simulated kubelet: write failed; retrying")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_CAP);
        }
    }

    async fn delete(&self, pod: &Pod) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
            ..DeleteParams::default()
        };
        let api = self.api(pod);
        self.persist(pod, || async { api.delete(&pod.name_any(), &params).await.map(drop) }).await;
    }

    async fn start_and_run(&self, pod: &Pod, already_running: bool) {
        let started = jiff::Timestamp::now();
        if !already_running {
            tokio::time::sleep(self.fleet.start_delay).await;
            let address = self.address_for(pod);
            self.write_status(pod, running_status(pod, address, started)).await;
        }
        let Some(code) = exit_code(pod) else {
            return;
        };
        let seconds = pod.annotations().get(RUN_SECONDS_ANNOTATION).and_then(|s| s.trim().parse::<f64>().ok());
        let run_for = seconds.and_then(|s| Duration::try_from_secs_f64(s).ok()).unwrap_or(self.fleet.run_time);
        tokio::time::sleep(run_for).await;
        self.write_status(pod, exited_status(pod, code, started)).await
    }

    async fn write_status(&self, pod: &Pod, status: Value) {
        let patch = Patch::Merge(json!({"status": status}));
        let api = self.api(pod);
        self.persist(pod, || async {
            api.patch_status(&pod.name_any(), &PatchParams::default(), &patch).await.map(drop)
        })
        .await;
    }

    /// The next address of the node's podCIDR (none while the node has no podCIDR).
    fn address_for(&self, pod: &Pod) -> Option<IpAddr> {
        let node_name = pod.spec.as_ref()?.node_name.clone()?;
        let node = self.nodes.get(&ObjectRef::new(&node_name))?;
        let cidr: IpNet = node.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
        let mut next = self.next_address.lock().unwrap_or_else(|e| e.into_inner());
        let counter = next.entry(node_name).or_insert(0);
        let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
        let hosts = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX).saturating_sub(2).clamp(1, 65_534) as u32;
        // .1 is the node's own bridge address, as on a real node.
        let index = 1 + (*counter % hosts.saturating_sub(1).max(1));
        *counter += 1;
        cidr.hosts().nth(index as usize)
    }
}

/// Whether the pod should report ready (unless annotated otherwise, it does).
fn wants_ready(pod: &Pod) -> bool {
    pod.annotations().get(READY_ANNOTATION).is_none_or(|v| v.trim() != "false")
}

/// The status change that makes a running pod's readiness what its annotation asks.
fn readiness_status(pod: &Pod, at: jiff::Timestamp) -> Value {
    let ready = if wants_ready(pod) { "True" } else { "False" };
    let current = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let conditions: Vec<Value> = current
        .iter()
        .map(|c| match c.type_.as_str() {
            "Ready" | "ContainersReady" => condition(&c.type_, ready, at),
            _ => serde_json::to_value(c).unwrap_or_default(),
        })
        .collect();
    let statuses: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            c.ready = wants_ready(pod);
            serde_json::to_value(c).unwrap_or_default()
        })
        .collect();
    json!({"conditions": conditions, "containerStatuses": statuses})
}

fn condition(kind: &str, status: &str, at: jiff::Timestamp) -> Value {
    json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": at})
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers.iter().map(|c| (c.name.clone(), c.image.clone().unwrap_or_default())).collect()
}

fn container_status(pod: &Pod, name: &str, image: &str, ready: bool, state: Value) -> Value {
    json!({
        "name": name, "image": image, "imageID": format!("simulated://{image}"),
        "containerID": format!("simulated://{}-{name}", pod.uid().unwrap_or_default()),
        "ready": ready, "started": state.get("running").is_some(), "restartCount": 0, "state": state,
    })
}

fn running_status(pod: &Pod, address: Option<IpAddr>, at: jiff::Timestamp) -> Value {
    let statuses: Vec<Value> = container_names(pod)
        .iter()
        .map(|(name, image)| {
            container_status(pod, name, image, wants_ready(pod), json!({"running": {"startedAt": at}}))
        })
        .collect();
    let mut status = json!({
        "phase": "Running",
        "startTime": at,
        "conditions": [
            condition("PodReadyToStartContainers", "True", at),
            condition("Initialized", "True", at),
            condition("Ready", if wants_ready(pod) { "True" } else { "False" }, at),
            condition("ContainersReady", if wants_ready(pod) { "True" } else { "False" }, at),
            condition("PodScheduled", "True", at),
        ],
        "containerStatuses": statuses,
        "qosClass": pod.status.as_ref().and_then(|s| s.qos_class.clone()).unwrap_or_else(|| "BestEffort".into()),
    });
    if let Some(ip) = address {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    status
}

fn exited_status(pod: &Pod, code: i32, started: jiff::Timestamp) -> Value {
    let now = jiff::Timestamp::now();
    let reason = if code == 0 { "Completed" } else { "Error" };
    let terminated = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now,
        "containerID": format!("simulated://{}", pod.uid().unwrap_or_default())}});
    let statuses: Vec<Value> = container_names(pod)
        .iter()
        .map(|(name, image)| container_status(pod, name, image, false, terminated.clone()))
        .collect();
    json!({
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [
            condition("PodReadyToStartContainers", "False", now),
            condition("Initialized", "True", started),
            json!({"type": "Ready", "status": "False", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": now}),
            json!({"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": now}),
            condition("PodScheduled", "True", started),
        ],
        "containerStatuses": statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(meta: Value) -> Pod {
        serde_json::from_value(json!({"metadata": meta, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
            .unwrap()
    }

    #[test]
    fn pods_of_jobs_and_annotated_pods_exit() {
        let job = pod(
            json!({"name": "j", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": true}]}),
        );
        assert_eq!(exit_code(&job), Some(0));
        assert_eq!(exit_code(&pod(json!({"name": "a", "annotations": {EXIT_CODE_ANNOTATION: "3"}}))), Some(3));
        assert_eq!(exit_code(&pod(json!({"name": "web"}))), None);
    }

    #[test]
    fn statuses_read_as_a_kubelet_writes_them() {
        let p = pod(json!({"name": "web", "uid": "u1"}));
        let running = running_status(&p, Some("10.42.0.2".parse().unwrap()), jiff::Timestamp::now());
        assert_eq!(running["phase"], "Running");
        assert_eq!(running["podIPs"], json!([{"ip": "10.42.0.2"}]));
        assert_eq!(running["containerStatuses"][0]["ready"], true);
        let failed = exited_status(&p, 2, jiff::Timestamp::now());
        assert_eq!(failed["phase"], "Failed");
        assert_eq!(failed["containerStatuses"][0]["state"]["terminated"]["exitCode"], 2);
    }
}
