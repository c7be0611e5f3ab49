//! The kubelet's pods: a watch of the pods bound to this node, and one worker per pod that syncs it
//! against the runtime (`sync.rs`) whenever the pod changes and every second (to see containers exit),
//! runs the containers' probes (`probes.rs`: killing those that fail liveness), posts its status when it
//! changed (`status.rs`), and when the pod is being deleted stops its
//! containers within the grace period, removes its sandbox and then the Pod object (grace 0, the uid
//! as precondition), as upstream's kubelet does. After each full listing, what the runtime still runs
//! for pods the API no longer has (deleted while tug was down) is removed.

pub mod dns;
pub mod env;
mod hooks;
pub mod probes;
pub mod resource_field;
mod service_env;
pub mod spec;
pub mod status;
pub mod sync;

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use crate::kubelet::static_pods;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::events::{EventType, Recorder};
use crate::kubelet::cri::Cri;

/// How often a pod is synced when nothing tells the worker to.
const RESYNC: Duration = Duration::from_secs(1);
/// `liveness probe` of `Liveness probe failed: …` (upstream's Killing message names the probe).
fn probe_name(why: &str) -> String {
    why.split(" probe failed").next().unwrap_or("its").to_ascii_lowercase() + " probe"
}

/// The grace period when the pod names none (the API's default).
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// What every pod worker shares.
pub struct Context {
    pub client: Client,
    /// The service account tokens of projected volumes.
    pub tokens: crate::kubelet::tokens::ServiceAccountTokens,
    pub cri: Cri,
    pub node_name: String,
    pub host_ip: String,
    /// Where the runtime writes container logs: `<logs_root>/<ns>_<pod>_<uid>/<container>/<attempt>.log`.
    pub logs_root: PathBuf,
    /// The pods' own files (volumes): `<pods_root>/<uid>/`.
    pub pods_root: PathBuf,
    /// Static pod manifests.
    pub manifests_dir: PathBuf,
    /// The machine's memory, read once (OOM scores are shares of it).
    pub memory_bytes: u64,
    /// The node's allocatable resources as its status reports them (limits a container leaves unset).
    pub allocatable: Arc<serde_json::Value>,
    /// What pods' resolv.conf is made from (the cluster's DNS domain among it).
    pub dns: dns::PodDns,
    pub recorder: Arc<Recorder>,
}

impl Context {
    pub fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: String) {
        let mut reference: ObjectReference = pod.object_ref(&());
        reference.resource_version = None;
        self.recorder.emit(reference, kind, reason, message);
    }
}

/// Watches the node's pods and runs their workers until `stop` turns true.
pub async fn run(context: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(context.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", context.node_name));
    let mut events = pin!(watcher(api, config).default_backoff());
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut listed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut static_uids: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut static_check = tokio::time::interval(static_pods::CHECK_EVERY);
    loop {
        let event = tokio::select! {
            _ = static_check.tick() => {
                static_uids = run_static_pods(&context, &mut workers, static_uids);
                continue;
            }
            event = events.next() => match event {
                Some(Ok(event)) => event,
                Some(Err(error)) => {
                    tracing::debug!(%error, "kubelet pod watch");
                    continue;
                }
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        workers.retain(|_, sender| !sender.is_closed());
        match event {
            // Mirror pods are the API's view of static pods, which run from their manifests.
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) | watcher::Event::Delete(pod)
                if static_pods::is_mirror(&pod) => {}
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let uid = pod.uid().unwrap_or_default();
                listed.insert(uid.clone());
                match workers.get(&uid) {
                    Some(sender) => {
                        let _ = sender.send(Some(Arc::new(pod)));
                    }
                    None => {
                        let (sender, receiver) = watch::channel(Some(Arc::new(pod)));
                        tokio::spawn(work(context.clone(), receiver));
                        workers.insert(uid, sender);
                    }
                }
            }
            // Gone from the API without the kubelet's part (a forced delete): its worker tears it down.
            watcher::Event::Delete(pod) => {
                if let Some(sender) = workers.get(&pod.uid().unwrap_or_default()) {
                    let _ = sender.send(None);
                }
            }
            watcher::Event::Init => listed.clear(),
            // What the runtime runs for pods the API no longer has (deleted while tug was down) goes.
            watcher::Event::InitDone => {
                // Pods gone while the watch re-listed: their workers tear them down.
                for (uid, sender) in &workers {
                    if !listed.contains(uid) && !static_uids.contains(uid) {
                        let _ = sender.send(None);
                    }
                }
                let listed_at = jiff::Timestamp::now().as_nanosecond() as i64;
                let mut known = std::mem::take(&mut listed);
                known.extend(static_uids.iter().cloned());
                tokio::spawn(remove_orphans(context.clone(), known, listed_at));
            }
        }
    }
}

/// Runs the static pods of the manifest directory (workers for new ones, teardown for removed ones),
/// then brings their mirror pods in line in the background; returns their uids.
fn run_static_pods(
    context: &Arc<Context>,
    workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    before: std::collections::HashSet<String>,
) -> std::collections::HashSet<String> {
    let pods = static_pods::read(&context.manifests_dir, &context.node_name);
    let uids: std::collections::HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
    for gone in before.difference(&uids) {
        if let Some(sender) = workers.remove(gone) {
            let _ = sender.send(None);
        }
    }
    for pod in &pods {
        if let std::collections::hash_map::Entry::Vacant(entry) = workers.entry(pod.uid().unwrap_or_default()) {
            let (sender, receiver) = watch::channel(Some(Arc::new(pod.clone())));
            tokio::spawn(work(context.clone(), receiver));
            entry.insert(sender);
        }
    }
    let context = context.clone();
    tokio::spawn(async move {
        if let Err(error) = static_pods::sync_mirrors(&context.client, &context.node_name, &pods).await {
            tracing::debug!(%error, "cannot bring the mirror pods in line yet");
        }
    });
    uids
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// One pod's worker: syncs until the pod is gone.
async fn work(context: Arc<Context>, mut updates: watch::Receiver<Option<Arc<Pod>>>) {
    let mut last_status: Option<serde_json::Value> = None;
    let mut posted_at = std::time::Instant::now();
    let mut stopped_terminal = false;
    let mut probes = probes::Probes::default();
    let mut retries = sync::Retries::default();
    let mut killed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut last_uid = String::new();
    loop {
        let Some(pod) = updates.borrow_and_update().clone() else {
            if let Err(status) = sync::tear_down(&context, &last_uid, None, Duration::ZERO, true).await {
                tracing::warn!(%status, uid = last_uid, "cannot remove a deleted pod's containers");
            }
            return;
        };
        // A static pod has no status of its own: it carries the one last posted, so that its start
        // and transition times hold (and an unchanged status is not posted again).
        let pod = match (&last_status, static_pods::is_static(&pod)) {
            (Some(status), true) => {
                let mut with_status = (*pod).clone();
                with_status.status = serde_json::from_value(status.clone()).ok();
                Arc::new(with_status)
            }
            _ => pod,
        };
        let uid = pod.uid().unwrap_or_default();
        last_uid.clone_from(&uid);
        let api: Api<Pod> = Api::namespaced(context.client.clone(), &pod.namespace().unwrap_or_default());
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .map_or(DEFAULT_GRACE, |s| Duration::from_secs(s.max(0) as u64));
            context.event(&pod, EventType::Normal, "Killing", "Stopping pod".to_string());
            match sync::tear_down(&context, &uid, Some(&pod), grace, true).await {
                Ok(()) => {
                    let preconditions = Preconditions { uid: Some(uid.clone()), resource_version: None };
                    let params = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(preconditions),
                        ..Default::default()
                    };
                    match api.delete(&pod.name_any(), &params).await {
                        Ok(_) => return,
                        // Gone already, or a namesake with another uid: nothing left to do.
                        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => return,
                        Err(error) => {
                            tracing::warn!(%error, pod = pod.name_any(), "cannot remove the deleted pod; retrying")
                        }
                    }
                }
                Err(status) => tracing::warn!(%status, pod = pod.name_any(), "cannot stop the pod's containers yet"),
            }
        } else if matches!(phase(&pod), "Succeeded" | "Failed") {
            if !stopped_terminal {
                stopped_terminal = sync::tear_down(&context, &uid, None, Duration::ZERO, false).await.is_ok();
            }
        } else {
            match sync::sync(&context, &pod, &mut retries).await {
                Ok(mut observed) => {
                    probe(&context, &pod, &mut observed, &mut probes, &mut killed).await;
                    let status = status::compute(&pod, &observed, jiff::Timestamp::now());
                    // A static pod's mirror may have been recreated without a status: post it again now and then.
                    let mirror_due = static_pods::is_static(&pod) && posted_at.elapsed() >= static_pods::CHECK_EVERY;
                    if last_status.as_ref() != Some(&status) || mirror_due {
                        let patch = Patch::Strategic(json!({"status": status}));
                        match api.patch_status(&pod.name_any(), &PatchParams::default(), &patch).await {
                            Ok(_) => {
                                last_status = Some(status);
                                posted_at = std::time::Instant::now();
                            }
                            Err(error) => {
                                tracing::debug!(%error, pod = pod.name_any(), "could not post the pod's status")
                            }
                        }
                    }
                }
                Err(status) => tracing::warn!(%status, pod = pod.name_any(), "pod sync failed"),
            }
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// Runs the probes of the pod's running containers; marks the unready ones and kills (in the
/// background, with the pod's grace period) those failing liveness or startup.
async fn probe(
    context: &Arc<Context>,
    pod: &Arc<Pod>,
    observed: &mut status::Observed,
    probes: &mut probes::Probes,
    killed: &mut std::collections::HashSet<String>,
) {
    let pod_ip = observed.pod_ip.clone().unwrap_or_default();
    let containers = pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
    let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64;
    for container in &containers {
        let Some(view) = observed.containers.get_mut(&container.name) else { continue };
        let Some(current) =
            view.current.clone().filter(|c| c.state == k8s_cri::v1::ContainerState::ContainerRunning as i32)
        else {
            continue;
        };
        let running_for = jiff::Timestamp::now().as_nanosecond() - i128::from(current.started_at);
        let started_at = std::time::Instant::now()
            .checked_sub(Duration::from_nanos(running_for.clamp(0, i128::from(u64::MAX)) as u64))
            .unwrap_or_else(std::time::Instant::now);
        let mut cri = context.cri.clone();
        let verdict = probes.check(&mut cri, container, &current.id, &pod_ip, started_at).await;
        view.unready = !verdict.ready;
        view.unstarted = !verdict.started;
        for why in verdict.failed {
            context.event(pod, EventType::Warning, "Unhealthy", why);
        }
        if let Some(why) = verdict.kill.filter(|_| killed.insert(current.id.clone())) {
            let message = format!("Container {} failed {}, will be restarted", container.name, probe_name(&why));
            context.event(pod, EventType::Normal, "Killing", message);
            let request = k8s_cri::v1::StopContainerRequest { container_id: current.id.clone(), timeout: grace as i64 };
            tokio::spawn(async move {
                if let Err(status) = cri.runtime.stop_container(request).await {
                    tracing::warn!(%status, "cannot stop a container that failed its probe");
                }
            });
        }
    }
}

/// Tears down the sandboxes and containers of pods not in `known` (pod uids, as listed at `listed_at`,
/// in nanoseconds; younger sandboxes belong to pods that came after the listing).
async fn remove_orphans(context: Arc<Context>, known: std::collections::HashSet<String>, listed_at: i64) {
    let mut cri = context.cri.clone();
    let request = k8s_cri::v1::ListPodSandboxRequest { filter: None };
    let sandboxes = match cri.runtime.list_pod_sandbox(request).await {
        Ok(response) => response.into_inner().items,
        Err(status) => {
            tracing::warn!(%status, "cannot list the runtime's pods to remove orphans");
            return;
        }
    };
    let orphans: std::collections::BTreeSet<String> = sandboxes
        .iter()
        .filter(|s| s.created_at < listed_at)
        .filter_map(|s| s.labels.get(spec::POD_UID))
        .filter(|uid| !known.contains(*uid))
        .cloned()
        .collect();
    for uid in orphans {
        tracing::info!(uid, "removing the containers of a pod that no longer exists");
        if let Err(status) = sync::tear_down(&context, &uid, None, Duration::ZERO, true).await {
            tracing::warn!(%status, uid, "cannot remove an orphaned pod's containers");
        }
    }
    // Volumes left by pods whose sandboxes are gone already.
    let listed_at = std::time::UNIX_EPOCH + Duration::from_nanos(listed_at.max(0) as u64);
    for entry in std::fs::read_dir(&context.pods_root).into_iter().flatten().flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        let older = entry.metadata().and_then(|m| m.modified()).is_ok_and(|at| at < listed_at);
        if older && !known.contains(&uid) {
            crate::kubelet::volumes::tear_down(&context.pods_root, &uid);
        }
    }
}
