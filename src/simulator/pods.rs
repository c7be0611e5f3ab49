//! What the simulated kubelets do with the pods bound to their nodes: after the start delay a pod is
//! Running and Ready with an address from its node's podCIDR; a pod that exits (one of a Job, or one
//! annotated `tug.dev/simulate-exit-code`) ends Succeeded or Failed after its run time; a pod being
//! deleted is removed at once, as a kubelet does once its containers are stopped.

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
/// Status writes in flight at once.
const CONCURRENCY: usize = 128;

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
    watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
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
                Ok(_) => {}
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
        if running && exit_code(&pod).is_none() && !terminating {
            return;
        }
        let key = if terminating { format!("{uid}/delete") } else { uid };
        if !self.handled.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone()) {
            return;
        }
        tokio::spawn(async move {
            let result = if terminating { self.delete(&pod).await } else { self.start_and_run(&pod, running).await };
            if let Err(error) = result {
                tracing::debug!(%error, pod = pod.name_any(), "simulated kubelet: write failed; retrying on the next event");
                self.handled.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            }
        });
    }

    fn api(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
    }

    async fn delete(&self, pod: &Pod) -> Result<(), kube::Error> {
        let _permit = self.writes.acquire().await;
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.api(pod).delete(&pod.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn start_and_run(&self, pod: &Pod, already_running: bool) -> Result<(), kube::Error> {
        let started = jiff::Timestamp::now();
        if !already_running {
            tokio::time::sleep(self.fleet.start_delay).await;
            let address = self.address_for(pod);
            self.write_status(pod, running_status(pod, address, started)).await?;
        }
        let Some(code) = exit_code(pod) else {
            return Ok(());
        };
        let seconds = pod.annotations().get(RUN_SECONDS_ANNOTATION).and_then(|s| s.trim().parse::<f64>().ok());
        let run_for =
            seconds.filter(|s| s.is_finite() && *s >= 0.0).map_or(self.fleet.run_time, Duration::from_secs_f64);
        tokio::time::sleep(run_for).await;
        self.write_status(pod, exited_status(pod, code, started)).await
    }

    async fn write_status(&self, pod: &Pod, status: Value) -> Result<(), kube::Error> {
        let _permit = self.writes.acquire().await;
        let patch = Patch::Merge(json!({"status": status}));
        match self.api(pod).patch_status(&pod.name_any(), &PatchParams::default(), &patch).await {
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            other => other.map(drop),
        }
    }

    /// The next address of the node's podCIDR (none while the node has no podCIDR).
    fn address_for(&self, pod: &Pod) -> Option<IpAddr> {
        let node_name = pod.spec.as_ref()?.node_name.clone()?;
        let node = self.nodes.get(&ObjectRef::new(&node_name))?;
        let cidr: IpNet = node.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
        let mut next = self.next_address.lock().unwrap_or_else(|e| e.into_inner());
        let counter = next.entry(node_name).or_insert(0);
        let hosts = cidr.hosts().count().clamp(1, 65_534) as u32;
        // .1 is the node's own bridge address, as on a real node.
        let index = 1 + (*counter % hosts.saturating_sub(1).max(1));
        *counter += 1;
        cidr.hosts().nth(index as usize)
    }
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
        "ready": ready, "started": ready, "restartCount": 0, "state": state,
    })
}

fn running_status(pod: &Pod, address: Option<IpAddr>, at: jiff::Timestamp) -> Value {
    let statuses: Vec<Value> = container_names(pod)
        .iter()
        .map(|(name, image)| container_status(pod, name, image, true, json!({"running": {"startedAt": at}})))
        .collect();
    let mut status = json!({
        "phase": "Running",
        "startTime": at,
        "conditions": [
            condition("PodReadyToStartContainers", "True", at),
            condition("Initialized", "True", at),
            condition("Ready", "True", at),
            condition("ContainersReady", "True", at),
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
