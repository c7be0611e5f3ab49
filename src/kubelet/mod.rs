//! The kubelet's work, embedded in the agent: registering the Node, keeping its Lease fresh and its
//! status true from the machine and the container runtime (CRI), running the node's pods (`pods/`) and
//! serving the kubelet API (`server.rs`: container logs for `kubectl logs`).

pub mod cri;
pub mod lease;
pub mod log_rotation;
pub mod logs;
pub mod machine;
pub mod node;
pub mod pods;
mod pull_secrets;
pub mod server;
pub mod sources;
pub mod static_pods;
pub mod stats;
mod streaming;
pub mod tokens;
pub mod volumes;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;

use cri::{Cri, RuntimeHealth};
use node::{Identity, Reporter};

/// How often the Lease is renewed (a quarter of its duration, as upstream).
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long to wait before retrying a failed registration.
const REGISTER_RETRY: Duration = Duration::from_secs(2);

/// How long the runtime may take to say how it is before it counts as down (so a hung runtime cannot
/// hold up the Lease).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The runtime's health, or not ready with the reason it could not be asked.
async fn health(cri: &mut Cri) -> RuntimeHealth {
    let down = |why: String| RuntimeHealth {
        runtime_ready: false,
        network_ready: false,
        message: format!("container runtime is down: {why}"),
    };
    match tokio::time::timeout(HEALTH_TIMEOUT, cri.health()).await {
        Ok(Ok(health)) => health,
        Ok(Err(error)) => down(error.to_string()),
        Err(_) => down(format!("no answer within {HEALTH_TIMEOUT:?}")),
    }
}

/// Registers the node, then heartbeats until `stop` turns true.
pub async fn run(
    client: Client,
    identity: Identity,
    tls: server::KubeletTls,
    log_rotation: log_rotation::Policy,
    mut cri: Cri,
    mut stop: watch::Receiver<bool>,
) {
    let runtime_version = match cri.version().await {
        Ok(version) => version.as_node_info(),
        Err(error) => {
            tracing::warn!(%error, "cannot read the container runtime's version");
            String::new()
        }
    };
    let host_ip = identity.address.map(|ip| ip.to_string()).unwrap_or_default();
    let api_address = std::net::SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), server::PORT);
    let stats = std::sync::Arc::new(stats::Latest::default());
    let node_name = identity.name.clone();
    let dns = pods::dns::PodDns {
        cluster_dns: identity.cluster_dns,
        cluster_domain: identity.cluster_domain.clone(),
        node: pods::dns::Resolv::of_node(identity.resolv_conf.as_deref()),
    };
    tokio::spawn(log_rotation::run(cri.clone(), log_rotation, stop.clone()));
    tokio::spawn(stats::sample(cri.clone(), node_name, stats.clone(), stop.clone()));
    tokio::spawn(server::run(api_address, tls, cri.clone(), client.clone(), stats, stop.clone()));
    let logs_root = identity.data_dir.join("agent").join("pod-logs");
    // Absolute and resolved, as /proc/self/mountinfo names the volumes' mounts.
    let manifests_dir = identity.data_dir.join("agent").join("pod-manifests");
    let pods_root = identity.data_dir.join("agent").join("pods");
    let pods_root = match std::fs::create_dir_all(&pods_root).and_then(|()| pods_root.canonicalize()) {
        Ok(resolved) => resolved,
        Err(error) => {
            tracing::error!(%error, dir = %pods_root.display(), "cannot create the pods' directory");
            pods_root
        }
    };
    let mut reporter = Reporter::new(identity, runtime_version);
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let health = health(&mut cri).await;
        match node::register(&nodes, &mut reporter, &health).await {
            Ok(()) => break,
            Err(error) => tracing::warn!(%error, node = reporter.name(), "cannot register the node; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REGISTER_RETRY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
    tracing::info!(node = reporter.name(), "node registered");
    let machine = machine::Machine::read(&pods_root);
    let context = std::sync::Arc::new(pods::Context {
        client: nodes.clone().into_client(),
        tokens: tokens::ServiceAccountTokens::new(nodes.clone().into_client()),
        cri: cri.clone(),
        node_name: reporter.name().to_string(),
        host_ip: host_ip.clone(),
        logs_root,
        pods_root,
        manifests_dir,
        memory_bytes: machine.memory_kib * 1024,
        allocatable: std::sync::Arc::new(machine.allocatable()),
        dns,
        recorder: crate::events::Recorder::new(nodes.clone().into_client(), "kubelet"),
    });
    tokio::spawn(pods::run(context, stop.clone()));
    let mut tick = tokio::time::interval(node::STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_renewal: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if last_renewal.is_none_or(|at| at.elapsed() >= LEASE_RENEW_EVERY) {
            match lease::renew(&leases, &nodes, reporter.name()).await {
                Ok(()) => last_renewal = Some(std::time::Instant::now()),
                Err(error) => tracing::warn!(%error, node = reporter.name(), "cannot renew the node's lease"),
            }
        }
        let health = health(&mut cri).await;
        if let Some(status) = reporter.due(&health) {
            let patch = Patch::Strategic(json!({"status": status.clone()}));
            match nodes.patch_status(reporter.name(), &PatchParams::default(), &patch).await {
                Ok(_) => reporter.posted(&status),
                Err(error) => tracing::warn!(%error, node = reporter.name(), "cannot post the node's status"),
            }
        }
    }
}
