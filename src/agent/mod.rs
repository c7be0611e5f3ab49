//! The node agent (`tug agent`, which joins a server first (`run.rs`, `credentials.rs`), and in-process
//! in `tug server`): prepares `<data-dir>/agent/`, starts
//! containerd as its child (or uses the runtime given by `--container-runtime-endpoint`), imports the
//! air-gapped images, writes the pod network's CNI config once the node has its podCIDR, and runs the
//! kubelet against the API.

pub mod archive;
pub mod cni;
pub mod containerd;
pub mod credentials;
pub mod images;
pub mod registries;
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
}

/// The running agent.
pub struct Agent {
    containerd: Option<Supervisor>,
    stop: watch::Sender<bool>,
    kubelet: tokio::task::JoinHandle<()>,
    network: Option<tokio::task::JoinHandle<()>>,
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
        let (containerd, socket, network) = match cfg.container_runtime_endpoint {
            Some(socket) => (None, socket, None),
            None => {
                let layout = Layout::new(&agent_dir);
                let socket = layout.socket();
                let network = tokio::spawn(cni::write_when_assigned(
                    kube::Api::all(client.clone()),
                    cfg.node.name.clone(),
                    layout.cni_conf_dir.clone(),
                    agent_dir.join("cni"),
                ));
                (Some(Supervisor::start(layout, &cfg.registries).await?), socket, Some(network))
            }
        };
        // One connection for containerd's own API (the import) and the CRI.
        let channel = Cri::connect(&socket).await?;
        images::import_dir(channel.clone(), &images_dir).await;
        let cri = Cri::over(channel);
        let (stop, stopped) = watch::channel(false);
        let kubelet =
            tokio::spawn(crate::kubelet::run(client, cfg.node, cfg.kubelet_tls, cfg.log_rotation, cri, stopped));
        Ok(Agent { containerd, stop, kubelet, network })
    }

    /// Stops the kubelet and containerd; containers keep running.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.kubelet.await;
        if let Some(network) = self.network {
            network.abort();
        }
        if let Some(containerd) = self.containerd {
            containerd.stop().await;
        }
    }
}
