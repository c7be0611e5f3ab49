//! The joining agent's credentials on disk under `<data-dir>/agent/`: the node password it proves its
//! name with, its private keys (made here, never sent), and what the server signed — the cluster CA,
//! the kubelet's client and serving certificates, a kubeconfig for the kubelet, and the cluster's
//! network settings (`files.rs`). Obtained from the server at every start, with the join token and the
//! node's unexpired client certificate (which the server accepts for its own name when the token has
//! expired or been rotated); when the server cannot be reached, unexpired credentials from an earlier
//! start are used, so a node reboots into service without its server or a current token. While the
//! agent runs they are renewed (`renewal.rs`).

mod files;
mod renewal;

pub use files::RENEW_MARK;
pub use renewal::Renewal;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::join::client::{self, JoinError, ServerUrl};
use crate::join::Token;
use crate::pki::Leaf;
use files::{Files, Freshness, Keys};

/// First and longest wait between join attempts that may succeed later.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What the kubelet runs with.
pub struct NodeCredentials {
    /// The cluster's network settings, as the server last gave them.
    pub network: crate::network::ClusterNetwork,
    pub ca_pem: String,
    pub client: Leaf,
    pub serving: Leaf,
    pub kubeconfig: PathBuf,
}

/// The node name, with the id of `<data-dir>/agent/node-id` appended when asked (made once).
pub fn node_name(agent_dir: &Path, name: &str, with_node_id: bool) -> anyhow::Result<String> {
    if !with_node_id {
        return Ok(name.to_string());
    }
    let path = agent_dir.join("node-id");
    let id = match std::fs::read_to_string(&path).ok().map(|id| id.trim().to_string()).filter(|id| !id.is_empty()) {
        Some(id) => id,
        None => {
            let id = crate::join::token::random_secret()[..8].to_string();
            crate::fsutil::write_atomic(&path, id.as_bytes(), 0o644)
                .with_context(|| format!("cannot write {}", path.display()))?;
            id
        }
    };
    Ok(format!("{name}-{id}"))
}

/// Joins (or re-joins) the cluster as node `name` at `addresses`; see the module doc. A refused join
/// (neither the token nor the node's certificate accepted) or a CA that does not match the token is an
/// error; anything that may pass later is retried.
pub async fn obtain(
    server: &ServerUrl,
    token: &Token,
    agent_dir: &Path,
    name: &str,
    addresses: &[IpAddr],
) -> anyhow::Result<NodeCredentials> {
    let files = Files::of(agent_dir)?;
    // `tug certificate rotate` asked for new keys, as a running agent's renewal makes.
    let rotate = files.path(RENEW_MARK).exists();
    let keys = if rotate { Keys::generate()? } else { files.keys()? };
    let request = files.request(&keys, name, addresses)?;
    let mut wait = RETRY_FIRST;
    loop {
        let joined = async {
            let ca_pem = client::fetch_ca(server, token).await?;
            // The node's certificate, for when the token has expired or been rotated since it joined.
            let kubelet_client = files.client_identity(&ca_pem, name);
            client::request_credentials(server, token, &ca_pem, kubelet_client, &request).await
        };
        match joined.await {
            Ok(credentials) => {
                files.store(&credentials, rotate.then_some(&keys), name, addresses)?;
                if rotate {
                    std::fs::remove_file(files.path(RENEW_MARK)).context("cannot remove the renewal mark")?;
                }
                tracing::info!(%server, node = name, "joined the cluster");
                break;
            }
            // A refusal is final (a node password rejected is retried: its holder may go away), an
            // unreachable server is not: the node starts on what it has while it is valid.
            Err(error @ JoinError::Unreachable(_))
                if files.earlier(token, name, addresses, Freshness::Unexpired).is_some() =>
            {
                tracing::warn!(%error, "starting with the credentials of an earlier start");
                break;
            }
            Err(error) if error.is_transient() => tracing::warn!(%error, retry_in = ?wait, "cannot join yet"),
            Err(error) => return Err(error.into()),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
    files.in_use(server, token, name, addresses)
}
