//! One idempotent sync of a pod against the CRI, and its teardown. A sync looks at what the runtime
//! has for the pod (found again by the pod-uid label, so nothing is lost when tug restarts), makes the
//! sandbox if there is no ready one, runs the init containers one by one to success, then per
//! container: starts it, leaves it running, restarts it as the restart policy says (attempt + 1; the
//! first restart at once, then CrashLoopBackOff's delay: 10 s doubling to 5 min, reset after 10 min of
//! running), or pulls its image first (ImagePullBackOff after a failure). It returns what it saw, for
//! the status.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_cri::v1::{
    ContainerFilter, ContainerState, ContainerStatusRequest, CreateContainerRequest, ImageSpec, ImageStatusRequest,
    ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter, PodSandboxState, PodSandboxStatusRequest,
    PullImageRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest,
};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;

use super::env;
use super::hooks;
use super::spec::{self, Placement, POD_UID};
use super::status::{ContainerView, Observed};
use super::Context;
use crate::events::EventType;
use crate::kubelet::cri::Cri;
use crate::kubelet::volumes;

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts without delay.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

type CriResult<T> = Result<T, tonic::Status>;

/// CrashLoopBackOff's delay before attempt `attempt + 1`.
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_START.saturating_mul(1 << attempt.min(8)).min(BACKOFF_MAX)
}

fn should_restart(restart_policy: &str, exit_code: i32) -> bool {
    match restart_policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// The pod's sandboxes (newest attempt last).
async fn sandboxes(cri: &mut Cri, uid: &str) -> CriResult<Vec<k8s_cri::v1::PodSandbox>> {
    let filter =
        PodSandboxFilter { label_selector: HashMap::from([(POD_UID.into(), uid.into())]), ..Default::default() };
    let mut items =
        cri.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) }).await?.into_inner().items;
    items.sort_by_key(|s| s.metadata.as_ref().map_or(0, |m| m.attempt));
    Ok(items)
}

/// The statuses of the pod's containers in every sandbox, grouped by name, oldest attempt first.
async fn containers(cri: &mut Cri, uid: &str) -> CriResult<BTreeMap<String, Vec<k8s_cri::v1::ContainerStatus>>> {
    let filter =
        ContainerFilter { label_selector: HashMap::from([(POD_UID.into(), uid.into())]), ..Default::default() };
    let listed = cri.runtime.list_containers(ListContainersRequest { filter: Some(filter) }).await?.into_inner();
    let mut by_name: BTreeMap<String, Vec<k8s_cri::v1::ContainerStatus>> = BTreeMap::new();
    for container in listed.containers {
        let request = ContainerStatusRequest { container_id: container.id.clone(), verbose: false };
        let Ok(response) = cri.runtime.container_status(request).await else { continue };
        if let Some(status) = response.into_inner().status {
            let name = status.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
            by_name.entry(name).or_default().push(status);
        }
    }
    for attempts in by_name.values_mut() {
        attempts.sort_by_key(|s| s.metadata.as_ref().map_or(0, |m| m.attempt));
    }
    Ok(by_name)
}

/// How often the files of volumes made from API objects are read again.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);

/// What a pod's worker remembers between syncs: what failed, and when its volumes were refreshed.
#[derive(Debug, Default)]
pub struct Retries {
    /// When the volumes' files were last read from the API.
    volumes_refreshed: Option<std::time::Instant>,
    /// The volumes as last set up in full.
    volumes: Option<volumes::PodVolumes>,
    /// Failed sandbox creations: each retry takes a new attempt number, since a creation cut short (tug
    /// or containerd killed meanwhile) can leave its name reserved in the runtime.
    failed_sandboxes: u32,
    /// Failed pulls per image: how many, and when the next may be tried (ImagePullBackOff).
    pulls: std::sync::Mutex<HashMap<String, (u32, std::time::Instant)>>,
}

/// Makes the runtime run what the pod asks for; returns what it then shows.
pub async fn sync(context: &Context, pod: &Pod, retries: &mut Retries) -> CriResult<Observed> {
    let refresh = retries.volumes_refreshed.is_none_or(|at| at.elapsed() >= VOLUME_REFRESH);
    // Set up once, then looked at again only when a refresh is due (not every second).
    let set_up = match (&retries.volumes, refresh) {
        (Some(volumes), false) => Ok(volumes.clone()),
        _ => {
            let sources = volumes::Sources {
                client: &context.client,
                tokens: &context.tokens,
                allocatable: &context.allocatable,
            };
            volumes::set_up(&sources, &context.pods_root, pod, refresh).await
        }
    };
    let volumes = match set_up {
        Ok(volumes) => {
            retries.volumes = Some(volumes.clone());
            volumes
        }
        Err(message) => {
            context.event(pod, EventType::Warning, "FailedMount", message);
            match &retries.volumes {
                // Set up before: the pod keeps running on the files it has (a source deleted, or the API
                // out of reach, does not take it down), and the refresh is tried again later.
                Some(previous) => previous.clone(),
                None => return Ok(waiting_all(pod, context, "ContainerCreating")),
            }
        }
    };
    if refresh {
        retries.volumes_refreshed = Some(std::time::Instant::now());
    }
    let failed_sandboxes = &mut retries.failed_sandboxes;
    let mut cri = context.cri.clone();
    let uid = pod.uid().unwrap_or_default();
    let known = sandboxes(&mut cri, &uid).await?;
    let ready = known.iter().rev().find(|s| s.state == PodSandboxState::SandboxReady as i32);
    let (sandbox_id, sandbox_config) = match ready {
        Some(sandbox) => {
            let attempt = sandbox.metadata.as_ref().map_or(0, |m| m.attempt);
            (sandbox.id.clone(), spec::sandbox_config(pod, attempt, &context.logs_root, Some(context.dns.config(pod))))
        }
        None => {
            let next = known.last().and_then(|s| s.metadata.as_ref()).map_or(0, |m| m.attempt + 1);
            let attempt = next.max(*failed_sandboxes);
            let config = spec::sandbox_config(pod, attempt, &context.logs_root, Some(context.dns.config(pod)));
            let request = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
            match cri.runtime.run_pod_sandbox(request).await {
                Ok(response) => (response.into_inner().pod_sandbox_id, config),
                Err(status) => {
                    *failed_sandboxes = attempt + 1;
                    let message = format!("Failed to create pod sandbox: {}", status.message());
                    context.event(pod, EventType::Warning, "FailedCreatePodSandBox", message);
                    return Ok(waiting_all(pod, context, "ContainerCreating"));
                }
            }
        }
    };
    let sandbox = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.clone(), verbose: false })
        .await?
        .into_inner()
        .status;
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    // A pod on the host's network has the host's address, as upstream reports it.
    let pod_ip = sandbox
        .as_ref()
        .and_then(|s| s.network.as_ref())
        .map(|n| n.ip.clone())
        .filter(|ip| !ip.is_empty())
        .or_else(|| host_network.then(|| context.host_ip.clone()));
    let placement = Placement {
        node_name: context.node_name.clone(),
        host_ip: context.host_ip.clone(),
        pod_ip: pod_ip.clone().unwrap_or_default(),
        allocatable: context.allocatable.clone(),
    };
    let mut attempts = containers(&mut cri, &uid).await?;
    let restart_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
    let launch = Launch {
        context,
        pod,
        sandbox_id: &sandbox_id,
        sandbox_config: &sandbox_config,
        placement: &placement,
        pulls: &retries.pulls,
        volumes: &volumes,
    };
    let spec = pod.spec.clone().unwrap_or_default();
    // Init containers one at a time, each to success; a failed one is retried unless the pod never
    // restarts.
    let init_policy = if restart_policy == "Never" { "Never" } else { "OnFailure" };
    let mut init_views = BTreeMap::new();
    let mut initialized = true;
    for init in spec.init_containers.iter().flatten() {
        let history = attempts.remove(&init.name).unwrap_or_default();
        let finished = ContainerView::of(history.clone(), None);
        let succeeded = finished.succeeded();
        let view = if succeeded { finished } else { launch.advance(init, history, init_policy).await };
        init_views.insert(init.name.clone(), view);
        if !succeeded {
            initialized = false;
            break;
        }
    }
    let mut views = BTreeMap::new();
    for container in &spec.containers {
        let history = attempts.remove(&container.name).unwrap_or_default();
        let view = if initialized {
            launch.advance(container, history, &restart_policy).await
        } else {
            ContainerView::of(history, Some(("PodInitializing".into(), String::new())))
        };
        views.insert(container.name.clone(), view);
    }
    // What this sync started is seen running by the next one; until then its status says created.
    Ok(Observed {
        pod_ip,
        sandbox_ready: true,
        host_ip: context.host_ip.clone(),
        initialized,
        init_containers: init_views,
        containers: views,
    })
}

/// What starting a container of the pod needs.
struct Launch<'a> {
    context: &'a Context,
    pod: &'a Pod,
    sandbox_id: &'a str,
    sandbox_config: &'a k8s_cri::v1::PodSandboxConfig,
    placement: &'a Placement,
    pulls: &'a std::sync::Mutex<HashMap<String, (u32, std::time::Instant)>>,
    volumes: &'a volumes::PodVolumes,
}

impl Launch<'_> {
    /// Moves one container on: starts a created one, restarts an exited one as `restart_policy` says
    /// (after CrashLoopBackOff's delay), creates a missing one. `history` is its attempts, oldest first.
    async fn advance(
        &self,
        container: &Container,
        history: Vec<k8s_cri::v1::ContainerStatus>,
        restart_policy: &str,
    ) -> ContainerView {
        let (context, pod) = (self.context, self.pod);
        let mut view = ContainerView::of(history, None);
        view.waiting = match &view.current {
            Some(c) if c.state == ContainerState::ContainerRunning as i32 => None,
            Some(c) if c.state == ContainerState::ContainerCreated as i32 => {
                start(context, pod, &c.id, &container.name).await;
                None
            }
            Some(c) if c.state == ContainerState::ContainerExited as i32 => {
                let attempt = c.metadata.as_ref().map_or(0, |m| m.attempt);
                let ran = Duration::from_nanos((c.finished_at - c.started_at).max(0) as u64);
                // The first restart is immediate; then 10 s, doubling (upstream's back-off).
                let delay = match attempt {
                    _ if ran >= BACKOFF_RESET => Duration::ZERO,
                    0 => Duration::ZERO,
                    n => backoff(n - 1),
                };
                let waited = Duration::from_nanos((now_nanos() - c.finished_at).max(0) as u64);
                if !should_restart(restart_policy, c.exit_code) {
                    None
                } else if waited < delay {
                    let message = format!(
                        "back-off {}s restarting failed container={} pod={}",
                        delay.as_secs(),
                        container.name,
                        pod.name_any()
                    );
                    context.event(pod, EventType::Warning, "BackOff", "Back-off restarting failed container".into());
                    Some(("CrashLoopBackOff".to_string(), message))
                } else {
                    if let Some(old) = &view.previous {
                        let mut cri = context.cri.clone();
                        let _ =
                            cri.runtime.remove_container(RemoveContainerRequest { container_id: old.id.clone() }).await;
                    }
                    self.create_and_start(container, attempt + 1).await
                }
            }
            // Its creation was cut short (tug or containerd died meanwhile): replaced by the next attempt.
            Some(c) => {
                let mut cri = context.cri.clone();
                let _ = cri.runtime.remove_container(RemoveContainerRequest { container_id: c.id.clone() }).await;
                let attempt = c.metadata.as_ref().map_or(0, |m| m.attempt + 1);
                self.create_and_start(container, attempt).await
            }
            None => self.create_and_start(container, 0).await,
        };
        view
    }

    /// Runs the container's postStart hook; a failed hook kills the container (its restart policy then
    /// decides), as upstream does.
    async fn post_start(&self, container: &Container, id: &str) {
        let (context, pod) = (self.context, self.pod);
        let Err(message) = hooks::post_start(&context.cri, container, id, &self.placement.pod_ip).await else { return };
        context.event(pod, EventType::Warning, "FailedPostStartHook", format!("PostStartHook failed: {message}"));
        let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0);
        let (mut cri, id) = (context.cri.clone(), id.to_string());
        // In the background: the pod's worker goes on while the container gets its grace period.
        tokio::spawn(async move {
            let _ = cri.runtime.stop_container(StopContainerRequest { container_id: id, timeout: grace }).await;
        });
    }

    /// Ensures the image and the environment's sources, creates attempt `attempt` of the container
    /// and starts it; the waiting reason when that could not be done.
    /// Pulls `image` with each of the pod's pull secrets that apply to it in turn until one works, or
    /// anonymously when none does apply; the last failure otherwise.
    async fn pull(
        &self,
        cri: &mut crate::kubelet::cri::Cri,
        spec: ImageSpec,
        image: &str,
    ) -> Result<(), tonic::Status> {
        let credentials = crate::kubelet::pull_secrets::credentials(&self.context.client, self.pod, image).await;
        let attempts: Vec<_> = match credentials.is_empty() {
            true => vec![None],
            false => credentials.into_iter().map(Some).collect(),
        };
        let mut outcome = Ok(());
        for auth in attempts {
            let sandbox_config = Some(self.sandbox_config.clone());
            let pull = PullImageRequest { image: Some(spec.clone()), auth, sandbox_config };
            outcome = cri.images.pull_image(pull).await.map(|_| ());
            if outcome.is_ok() {
                break;
            }
        }
        outcome
    }

    /// Makes the container's image present as its pull policy says (IfNotPresent, Always, Never); the
    /// waiting reason and message when it cannot.
    async fn ensure_image(
        &self,
        cri: &mut crate::kubelet::cri::Cri,
        container: &Container,
    ) -> Option<(String, String)> {
        let (context, pod) = (self.context, self.pod);
        let image = container.image.clone().unwrap_or_default();
        let spec = ImageSpec { image: image.clone(), ..Default::default() };
        let present = cri
            .images
            .image_status(ImageStatusRequest { image: Some(spec.clone()), verbose: false })
            .await
            .is_ok_and(|r| r.into_inner().image.is_some());
        let policy = container.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        if policy == "Never" && !present {
            let message = format!("Container image {image:?} is not present with pull policy of Never");
            context.event(pod, EventType::Warning, "ErrImageNeverPull", message.clone());
            return Some(("ErrImageNeverPull".into(), message));
        }
        if present && policy != "Always" {
            let message = format!("Container image {image:?} already present on machine");
            context.event(pod, EventType::Normal, "Pulled", message);
            return None;
        }
        let waiting = self.pulls.lock().ok().and_then(|p| p.get(&image).map(|(_, next)| *next));
        if waiting.is_some_and(|next| std::time::Instant::now() < next) {
            return Some(("ImagePullBackOff".into(), format!("Back-off pulling image {image:?}")));
        }
        if let Err(status) = self.pull(cri, spec, &image).await {
            let message = format!("Failed to pull image {image:?}: {}", status.message());
            context.event(pod, EventType::Warning, "Failed", message.clone());
            if let Ok(mut pulls) = self.pulls.lock() {
                let failures = pulls.get(&image).map_or(0, |(n, _)| *n) + 1;
                pulls.insert(image.clone(), (failures, std::time::Instant::now() + backoff(failures - 1)));
            }
            return Some(("ErrImagePull".into(), message));
        }
        if let Ok(mut pulls) = self.pulls.lock() {
            pulls.remove(&image);
        }
        context.event(pod, EventType::Normal, "Pulled", format!("Successfully pulled image {image:?}"));
        None
    }

    async fn create_and_start(&self, container: &Container, attempt: u32) -> Option<(String, String)> {
        let (context, pod) = (self.context, self.pod);
        let mut cri = context.cri.clone();
        if let Some(waiting) = self.ensure_image(&mut cri, container).await {
            return Some(waiting);
        }
        let resolved = match env::resolve(&context.client, pod, container).await {
            Ok(resolved) => resolved,
            Err(message) => {
                context.event(pod, EventType::Warning, "Failed", format!("Error: {message}"));
                return Some(("CreateContainerConfigError".into(), message));
            }
        };
        let env = spec::environment(pod, container, self.placement, &resolved);
        let mut config = spec::container_config(pod, container, attempt, &env);
        if let Some(resources) = config.linux.as_mut().and_then(|l| l.resources.as_mut()) {
            resources.oom_score_adj = spec::oom_score_adj(pod, container, context.memory_bytes);
        }
        let hosts = volumes::etc_hosts(&context.pods_root, pod, &self.placement.pod_ip, &context.dns.cluster_domain);
        let mounts = volumes::mounts(container, self.volumes, &env).and_then(|mut mounts| {
            let own_hosts = mounts.iter().any(|m| m.container_path == "/etc/hosts");
            mounts.extend(hosts?.filter(|_| !own_hosts));
            Ok(mounts)
        });
        config.mounts = match mounts {
            Ok(mounts) => mounts,
            Err(message) => {
                context.event(pod, EventType::Warning, "Failed", format!("Error: {message}"));
                return Some(("CreateContainerConfigError".into(), message));
            }
        };
        let request = CreateContainerRequest {
            pod_sandbox_id: self.sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(self.sandbox_config.clone()),
        };
        match cri.runtime.create_container(request).await {
            Ok(response) => {
                context.event(pod, EventType::Normal, "Created", format!("Created container {}", container.name));
                let id = response.into_inner().container_id;
                if start(context, pod, &id, &container.name).await {
                    self.post_start(container, &id).await;
                }
                Some(("ContainerCreating".into(), String::new()))
            }
            Err(status) => {
                let message = status.message().to_string();
                context.event(pod, EventType::Warning, "Failed", format!("Error: {message}"));
                Some(("CreateContainerError".into(), message))
            }
        }
    }
}

/// Every container waiting for `reason` (the sandbox could not be made).
fn waiting_all(pod: &Pod, context: &Context, reason: &str) -> Observed {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    Observed {
        pod_ip: None,
        sandbox_ready: false,
        host_ip: context.host_ip.clone(),
        initialized: pod.spec.as_ref().is_none_or(|s| s.init_containers.as_ref().is_none_or(Vec::is_empty)),
        init_containers: BTreeMap::new(),
        containers: containers
            .iter()
            .map(|c| (c.name.clone(), ContainerView::of(Vec::new(), Some((reason.into(), String::new())))))
            .collect(),
    }
}

/// Starts the container; whether it started.
async fn start(context: &Context, pod: &Pod, id: &str, name: &str) -> bool {
    let mut cri = context.cri.clone();
    match cri.runtime.start_container(StartContainerRequest { container_id: id.to_string() }).await {
        Ok(_) => {
            context.event(pod, EventType::Normal, "Started", format!("Started container {name}"));
            true
        }
        Err(status) => {
            context.event(pod, EventType::Warning, "Failed", format!("Error: {}", status.message()));
            false
        }
    }
}

/// What is left of the grace period after a preStop hook, at the least (upstream's minimum).
const GRACE_AFTER_PRE_STOP: Duration = Duration::from_secs(2);

/// Stops the pod's containers (each given `grace` to exit after SIGTERM, its preStop hook run first when
/// `pod` is given) and its sandboxes. With `remove`, the sandboxes and containers are removed as well.
pub async fn tear_down(
    context: &Context,
    pod_uid: &str,
    pod: Option<&Pod>,
    grace: Duration,
    remove: bool,
) -> CriResult<()> {
    let mut cri = context.cri.clone();
    let running = containers(&mut cri, pod_uid).await?;
    let pod_ip = pod.and_then(|p| p.status.as_ref()?.pod_ip.clone()).unwrap_or_default();
    let specs: Vec<&Container> =
        pod.and_then(|p| p.spec.as_ref()).map(|s| s.containers.iter().collect()).unwrap_or_default();
    let stops = running
        .iter()
        .flat_map(|(name, attempts)| attempts.iter().map(move |c| (name, c)))
        .filter(|(_, c)| c.state == ContainerState::ContainerRunning as i32);
    let stops = stops.map(|(name, c)| {
        let mut cri = cri.clone();
        let spec = specs.iter().find(|s| &s.name == name).copied();
        let pod_ip = pod_ip.clone();
        async move {
            let started = std::time::Instant::now();
            let mut timeout = grace;
            if let (Some(spec), Some(pod)) =
                (spec.filter(|s| s.lifecycle.as_ref().is_some_and(|l| l.pre_stop.is_some())), pod)
            {
                if let Err(message) = hooks::pre_stop(&cri, spec, &c.id, &pod_ip, grace).await {
                    let message = format!("PreStopHook failed: {message}");
                    context.event(pod, EventType::Warning, "FailedPreStopHook", message);
                }
                timeout = grace.saturating_sub(started.elapsed()).max(GRACE_AFTER_PRE_STOP);
            }
            let request = StopContainerRequest { container_id: c.id.clone(), timeout: timeout.as_secs() as i64 };
            cri.runtime.stop_container(request).await
        }
    });
    for result in futures::future::join_all(stops).await {
        result?;
    }
    for sandbox in sandboxes(&mut cri, pod_uid).await? {
        cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.id.clone() }).await?;
        if remove {
            cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox.id }).await?;
        }
    }
    // Stopped for good (deleted, or finished): its volumes go, as upstream's kubelet unmounts them.
    volumes::tear_down(&context.pods_root, pod_uid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_backoff_doubles_from_ten_seconds_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(10));
        assert_eq!(backoff(1), Duration::from_secs(20));
        assert_eq!(backoff(4), Duration::from_secs(160));
        assert_eq!(backoff(5), Duration::from_secs(300));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }

    #[test]
    fn restart_policies_decide_by_exit_code() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("OnFailure", 1) && !should_restart("OnFailure", 0));
        assert!(!should_restart("Never", 1));
    }
}
