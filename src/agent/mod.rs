//! The node agent (`tug agent`, which joins a server first (`run.rs`, `credentials.rs`), and in-process
//! in `tug server`): prepares `<data-dir>/agent/`, starts containerd as its child (or uses the runtime
//! given by `--container-runtime-endpoint`), imports the air-gapped images, and runs the node's parts
//! against the API: the pod network (`crate::network`), the service proxy (`crate::proxy`) and the
//! kubelet.

mod api_client;
pub mod archive;
pub mod balancer;
pub mod containerd;
pub mod credentials;
pub mod images;
pub mod registries;
pub mod renewal;
mod run;

pub use run::run;

use std::path::PathBuf;

use anyhow::Context;
use tokio::sync::watch;

use crate::kubelet::cri::Cri;
use crate::kubelet::node::Identity;
use containerd::{Layout, Supervisor};

/// What the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// tug's data dir; the agent keeps its state in `agent/` under it.
    pub data_dir: PathBuf,
    pub node: Identity,
    /// An existing CRI runtime's socket, instead of starting containerd.
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Private registries for the containerd the agent starts.
    pub registries: registries::Registries,
    /// What the kubelet's API serves with and trusts.
    pub kubelet_tls: crate::kubelet::server::KubeletTls,
    pub log_rotation: crate::kubelet::log_rotation::Policy,
    /// The cluster's network settings.
    pub network: crate::network::ClusterNetwork,
}

/// The running agent.
pub struct Agent {
    containerd: Option<Supervisor>,
    stop: watch::Sender<bool>,
    kubelet: tokio::task::JoinHandle<()>,
    /// The pod network, the proxy and their caches.
    networking: Vec<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Starts the runtime, imports the images and starts the kubelet, whose API client is `client`.
    pub async fn start(cfg: AgentConfig, client: kube::Client) -> anyhow::Result<Agent> {
        let agent_dir = cfg.data_dir.join("agent");
        let images_dir = agent_dir.join("images");
        for dir in [&agent_dir, &images_dir] {
            crate::fsutil::create_private_dir(dir, 0o700)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let (stop, stopped) = watch::channel(false);
        let (containerd, socket, cni) = match &cfg.container_runtime_endpoint {
            Some(socket) => (None, socket.clone(), None),
            None => {
                let layout = Layout::new(&agent_dir);
                let socket = layout.socket();
                let cni = (layout.cni_conf_dir.clone(), agent_dir.join("cni"));
                (Some(Supervisor::start(layout, &cfg.registries).await?), socket, Some(cni))
            }
        };
        let networking = start_networking(&cfg, &client, cni, &stopped).await;
        // One connection for containerd's own API (the import) and the CRI.
        let channel = Cri::connect(&socket).await?;
        images::import_dir(channel.clone(), &images_dir).await;
        let cri = Cri::over(channel);
        let kubelet =
            tokio::spawn(crate::kubelet::run(client, cfg.node, cfg.kubelet_tls, cfg.log_rotation, cri, stopped));
        Ok(Agent { containerd, stop, kubelet, networking })
    }

    /// Stops the kubelet and containerd; containers keep running.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.kubelet.await;
        for task in self.networking {
            task.abort();
        }
        if let Some(containerd) = self.containerd {
            containerd.stop().await;
        }
    }
}

/// The pod network, the service proxy, NetworkPolicy enforcement and the cluster DNS (the proxy and
/// the DNS over one cache of Services and EndpointSlices).
async fn start_networking(
    cfg: &AgentConfig,
    client: &kube::Client,
    cni: Option<(std::path::PathBuf, std::path::PathBuf)>,
    stopped: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let iptables = crate::iptables::Iptables::detect().await;
    let network = crate::network::NodeNetwork {
        cluster: cfg.network.clone(),
        node_name: cfg.node.name.clone(),
        node_ip: cfg.node.address,
        cni,
    };
    let (cache, watching) = crate::proxy::cache::ServiceCache::start(client);
    let node = crate::proxy::render::Node { name: cfg.node.name.clone(), cluster_cidr: cfg.network.cluster_cidr };
    let mut tasks = vec![
        tokio::spawn(crate::network::run(client.clone(), iptables.clone(), network, stopped.clone())),
        tokio::spawn(crate::proxy::run(cache.clone(), iptables.clone(), node, stopped.clone())),
        watching,
    ];
    if cfg.network.network_policy {
        let name = cfg.node.name.clone();
        tasks.push(tokio::spawn(crate::netpol::run(client.clone(), iptables, name, stopped.clone())));
    } else {
        tasks.push(tokio::spawn(async move {
            if let Err(error) = crate::netpol::remove(&iptables).await {
                tracing::warn!(%error, "cannot remove the rules of earlier network policies");
            }
        }));
    }
    if cfg.network.dns {
        let (nodes, name, cluster, stop) =
            (kube::Api::all(client.clone()), cfg.node.name.clone(), cfg.network.clone(), stopped.clone());
        let nameservers = crate::kubelet::pods::dns::Resolv::of_node(cfg.node.resolv_conf.as_deref()).nameservers;
        tasks.push(tokio::spawn(async move {
            let pod_cidr = crate::network::wait_for_pod_cidr(&nodes, &name).await;
            crate::dns::run(cache, cluster, pod_cidr, nameservers, stop).await
        }));
    }
    tasks
}
