//! The joining agent's credentials on disk under `<data-dir>/agent/`: the node password it proves its
//! name with, its private keys (made here, never sent), and what the server signed — the cluster CA,
//! the kubelet's client and serving certificates, a kubeconfig for the kubelet, and the cluster's
//! network settings. Obtained from the server at every start; when the server cannot be reached, or
//! refuses a token that has since expired or been rotated, credentials from an earlier start that are
//! still good are used, so a node reboots into service without its server or a current token.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rcgen::{CertificateParams, KeyPair};

use crate::join::client::{self, JoinError, ServerUrl};
use crate::join::{Credentials, CredentialsRequest, Token};
use crate::pki::{self, Leaf, LiveIdentity};

/// First and longest wait between join attempts that may succeed later.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// The cluster's network settings from the last join, under the agent dir.
const NETWORK_FILE: &str = "cluster-network.json";

/// What the kubelet runs with.
pub struct NodeCredentials {
    /// The cluster's network settings, as the server last gave them.
    pub network: crate::network::ClusterNetwork,
    pub ca_pem: String,
    pub client: Leaf,
    pub serving: Leaf,
    pub kubeconfig: PathBuf,
}

/// The agent's credential files.
struct Files {
    agent_dir: PathBuf,
    tls_dir: PathBuf,
}

impl Files {
    fn of(agent_dir: &Path) -> anyhow::Result<Files> {
        let files = Files { agent_dir: agent_dir.to_path_buf(), tls_dir: agent_dir.join("tls") };
        crate::fsutil::create_private_dir(&files.tls_dir, 0o700)?;
        Ok(files)
    }

    /// The credentials just stored, with the kubelet's kubeconfig written for them.
    fn in_use(
        &self,
        server: &ServerUrl,
        token: &Token,
        name: &str,
        addresses: &[IpAddr],
    ) -> anyhow::Result<NodeCredentials> {
        let credentials =
            self.earlier(token, name, addresses).context("the credentials just written are not usable")?;
        pki::write_kubeconfig(
            &credentials.kubeconfig,
            &server.to_string(),
            &credentials.ca_pem,
            &credentials.client,
            0o600,
        )?;
        Ok(credentials)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tls_dir.join(name)
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok()
    }

    fn write(&self, name: &str, contents: &str, mode: u32) -> anyhow::Result<()> {
        let path = self.path(name);
        crate::fsutil::write_atomic(&path, contents.as_bytes(), mode)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// A key kept from earlier starts, or a new one.
    fn key(&self, name: &str) -> anyhow::Result<KeyPair> {
        if let Some(key) = self.read(name).and_then(|pem| KeyPair::from_pem(&pem).ok()) {
            return Ok(key);
        }
        let key = KeyPair::generate()?;
        self.write(name, &key.serialize_pem(), 0o600)?;
        Ok(key)
    }

    /// A request for certificates of the node's keys (kept, or new when set aside).
    fn request(&self, name: &str, addresses: &[IpAddr]) -> anyhow::Result<CredentialsRequest> {
        let (client_key, serving_key) = (self.key("client-kubelet.key")?, self.key("serving-kubelet.key")?);
        Ok(CredentialsRequest {
            node_name: name.to_string(),
            node_password: node_password(&self.agent_dir)?,
            addresses: addresses.to_vec(),
            client_csr: CertificateParams::default().serialize_request(&client_key)?.pem()?,
            serving_csr: CertificateParams::default().serialize_request(&serving_key)?.pem()?,
        })
    }

    /// Keeps what the server issued.
    fn store(&self, credentials: &Credentials) -> anyhow::Result<()> {
        self.write("server-ca.crt", &credentials.ca_cert, 0o644)?;
        self.write("client-kubelet.crt", &credentials.client_cert, 0o644)?;
        self.write("serving-kubelet.crt", &credentials.serving_cert, 0o644)?;
        let network = serde_json::to_vec_pretty(&credentials.network)?;
        crate::fsutil::write_atomic(&self.agent_dir.join(NETWORK_FILE), &network, 0o644)
            .with_context(|| format!("cannot write {NETWORK_FILE}"))
    }

    /// The certificates of an earlier start, if they are still good and from the token's cluster.
    fn earlier(&self, token: &Token, name: &str, addresses: &[IpAddr]) -> Option<NodeCredentials> {
        let ca_pem = self.read("server-ca.crt")?;
        if token.ca_hash.as_ref().is_some_and(|hash| *hash != crate::join::token::ca_hash(ca_pem.as_bytes())) {
            return None;
        }
        let leaf = |cert: &str, key: &str, spec: &pki::LeafSpec| {
            let cert_pem = self.read(cert)?;
            pki::still_good(&cert_pem, spec).ok()?.then_some(Leaf { cert_pem, key_pem: self.read(key)? })
        };
        let network = serde_json::from_str(&std::fs::read_to_string(self.agent_dir.join(NETWORK_FILE)).ok()?).ok()?;
        Some(NodeCredentials {
            network,
            client: leaf("client-kubelet.crt", "client-kubelet.key", &pki::kubelet_client_spec(name))?,
            serving: leaf("serving-kubelet.crt", "serving-kubelet.key", &pki::kubelet_serving_spec(name, addresses))?,
            kubeconfig: self.agent_dir.join("kubelet.kubeconfig"),
            ca_pem,
        })
    }
}

/// The node password: made once, kept in `<data-dir>/agent/node-password`.
fn node_password(agent_dir: &Path) -> anyhow::Result<String> {
    let path = agent_dir.join("node-password");
    if let Some(password) = std::fs::read_to_string(&path).ok().map(|p| p.trim().to_string()).filter(|p| !p.is_empty())
    {
        return Ok(password);
    }
    let password = crate::join::token::random_secret();
    crate::fsutil::write_atomic(&path, password.as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(password)
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

/// Joins (or re-joins) the cluster as node `name` at `addresses`; see the module doc. A refused token
/// (unless earlier credentials are still good) or a CA that does not match the token is an error;
/// anything that may pass later is retried.
pub async fn obtain(
    server: &ServerUrl,
    token: &Token,
    agent_dir: &Path,
    name: &str,
    addresses: &[IpAddr],
) -> anyhow::Result<NodeCredentials> {
    let files = Files::of(agent_dir)?;
    let request = files.request(name, addresses)?;
    let mut wait = RETRY_FIRST;
    loop {
        let joined = async {
            let ca_pem = client::fetch_ca(server, token).await?;
            client::request_credentials(server, token, &ca_pem, None, &request).await
        };
        match joined.await {
            Ok(credentials) => {
                files.store(&credentials)?;
                tracing::info!(%server, node = name, "joined the cluster");
                break;
            }
            // A token that expired or was rotated since this node joined: it keeps running on what it has.
            Err(error @ JoinError::Unauthorized(_)) if files.earlier(token, name, addresses).is_some() => {
                tracing::warn!(%error, "starting with the credentials of an earlier start; update the token to join again");
                break;
            }
            Err(error @ JoinError::Unreachable(_)) => match files.earlier(token, name, addresses) {
                Some(_) => {
                    tracing::warn!(%error, "starting with the credentials of an earlier start");
                    break;
                }
                None => tracing::warn!(%error, retry_in = ?wait, "cannot join yet"),
            },
            Err(error) if error.is_transient() => tracing::error!(%error, retry_in = ?wait, "cannot join yet"),
            Err(error) => return Err(error.into()),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
    files.in_use(server, token, name, addresses)
}

/// A running agent's kubelet certificates, renewed with its current client certificate.
pub struct Renewal {
    pub server: ServerUrl,
    pub token: Token,
    pub agent_dir: PathBuf,
    pub name: String,
    pub addresses: Vec<IpAddr>,
    /// What the kubelet presents to the servers.
    pub client: Arc<LiveIdentity>,
    /// What the kubelet serves its API with.
    pub serving: Arc<LiveIdentity>,
}

impl Renewal {
    /// When the certificates on disk are due (within 120 days of expiry, set aside by `tug certificate
    /// rotate`, or lacking an address), asks the server for new ones and puts them in use; whether it
    /// did.
    pub async fn renew_if_due(&self) -> anyhow::Result<bool> {
        let files = Files::of(&self.agent_dir)?;
        if files.earlier(&self.token, &self.name, &self.addresses).is_some() {
            return Ok(false);
        }
        let request = files.request(&self.name, &self.addresses)?;
        let ca_pem = files.read("server-ca.crt").context("the cluster CA certificate is missing")?;
        let issued =
            client::request_credentials(&self.server, &self.token, &ca_pem, Some(self.client.clone()), &request)
                .await?;
        files.store(&issued)?;
        let credentials = files.in_use(&self.server, &self.token, &self.name, &self.addresses)?;
        self.client.replace(&credentials.client.cert_pem, &credentials.client.key_pem)?;
        self.serving.replace(&credentials.serving.cert_pem, &credentials.serving.key_pem)?;
        Ok(true)
    }
}
