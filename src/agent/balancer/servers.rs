//! Which API servers the agent's balancer knows: the `--server` one, always, and those the `kubernetes`
//! Endpoints list, followed with a watch and kept in `<data-dir>/agent/etc/tug-agent-load-balancer.json`
//! so that a node restarting while its `--server` is down reaches another server.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde::{Deserialize, Serialize};

const FILE: &str = "etc/tug-agent-load-balancer.json";

/// What the file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    server_url: String,
    server_addresses: Vec<String>,
}

/// The known servers, `host:port`, the default one first.
pub struct ServerList {
    path: PathBuf,
    default: String,
    learned: Mutex<Vec<String>>,
}

impl ServerList {
    /// The list kept in `agent_dir`, with `default` in front; a list learned through another
    /// `--server` (maybe another cluster's) is forgotten.
    pub fn load(agent_dir: &Path, default: &str) -> ServerList {
        let path = agent_dir.join(FILE);
        let saved: Saved =
            std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
        let learned = if saved.server_url == default { saved.server_addresses } else { Vec::new() };
        ServerList { path, default: default.to_string(), learned: Mutex::new(learned) }
    }

    /// The servers to try, in order: the default one, then the learned ones.
    pub fn servers(&self) -> Vec<String> {
        let learned = self.learned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut servers = vec![self.default.clone()];
        servers.extend(learned.iter().filter(|s| **s != self.default).cloned());
        servers
    }

    /// Takes `learned` as the servers the cluster has now (an empty list is ignored: a cluster has at
    /// least one server) and saves it; the servers to try.
    pub fn learned(&self, learned: Vec<String>) -> Vec<String> {
        if !learned.is_empty() {
            let mut kept = self.learned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if *kept != learned {
                *kept = learned;
                if let Err(error) = self.save(&kept) {
                    tracing::warn!(%error, path = %self.path.display(), "cannot keep the API servers' addresses");
                }
            }
        }
        self.servers()
    }

    fn save(&self, learned: &[String]) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            crate::fsutil::create_private_dir(dir, 0o700)?;
        }
        let saved = Saved { server_url: self.default.clone(), server_addresses: learned.to_vec() };
        crate::fsutil::write_atomic(&self.path, &serde_json::to_vec_pretty(&saved)?, 0o600)?;
        Ok(())
    }
}

/// Watches the `kubernetes` Endpoints through `client` and hands each version's servers to `learn`.
pub async fn follow(client: kube::Client, learn: impl Fn(Vec<String>)) {
    let api: Api<Endpoints> = Api::namespaced(client, "default");
    let config = watcher::Config::default().fields("metadata.name=kubernetes");
    let mut events = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    while let Some(event) = events.next().await {
        match event {
            Ok(endpoints) => {
                let servers = crate::server::endpoints::listed(&endpoints);
                learn(servers.iter().map(ToString::to_string).collect());
            }
            Err(error) => tracing::debug!(%error, "cannot watch the kubernetes endpoints yet"),
        }
    }
}
