//! The cluster's certificates: a CA (10 years) made on first start, and the leaves signed by it (the API
//! server's serving certificate, the admin client certificate, the API server's client certificate
//! towards kubelets, each kubelet's serving certificate), and the service account signing key. Files
//! live under `<data-dir>/server/tls`, keys mode 0600. On restart everything is reused, except a leaf
//! that is within 120 days of expiry or lacks a SAN now configured, which is re-issued.

mod authority;
mod kubeconfig;
mod live;
mod service_key;

pub use authority::{describe, renew_at, still_good, unexpired, Authority, Leaf, LeafSpec, RENEW_BEFORE};
pub use kubeconfig::write_kubeconfig;
pub use live::{IdentityError, LiveIdentity};
pub use service_key::{service_account_key, SERVICE_KEY_FILE};

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The server's leaf certificates, by file name (without `.crt`/`.key`).
pub const LEAF_NAMES: [&str; 4] =
    ["serving-kube-apiserver", "client-admin", "client-kube-apiserver-kubelet", "client-tug-server-peer"];

/// A kubelet's leaf certificates, by file name (without `.crt`/`.key`), under `<data-dir>/agent/tls`
/// (a server's own node has only the serving one).
pub const KUBELET_LEAF_NAMES: [&str; 2] = ["client-kubelet", "serving-kubelet"];

/// The cluster CA's file name (`<name>.crt`, `.key`) and common name.
pub const CA_NAME: &str = "server-ca";
const CA_COMMON_NAME: &str = "tug-server-ca";

/// The organization of the certificate servers present to each other; only its holders reach the
/// replication endpoints.
pub const PEER_GROUP: &str = "tug:servers";

/// The files every server of a cluster shares (the CA and the service account key), handed to a
/// joining server.
pub fn shared_files() -> [String; 3] {
    [format!("{CA_NAME}.crt"), format!("{CA_NAME}.key"), SERVICE_KEY_FILE.to_string()]
}

/// Loads (or creates) the cluster CA kept in `dir`.
pub fn cluster_authority(dir: &Path) -> Result<Authority> {
    Authority::load_or_create(dir, CA_NAME, CA_COMMON_NAME)
}

/// PKI failures.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} is not a usable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("invalid SAN {0:?}")]
    BadSan(String),
}

pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// The files the API server serves and authenticates with.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca_cert_pem: String,
    pub serving: Leaf,
    pub admin: Leaf,
    /// The API server's client certificate towards kubelets (logs, exec, port-forward).
    pub kubelet_client: Leaf,
    /// What this server presents to the other servers (replication).
    pub peer: Leaf,
    pub dir: PathBuf,
}

/// Loads or creates the CA and the API server's leaves under `dir`.
/// `dns_sans` and `ip_sans` are what the serving certificate must cover.
pub fn ensure_server_tls(dir: &Path, dns_sans: &[String], ip_sans: &[IpAddr]) -> Result<ServerTls> {
    crate::fsutil::create_private_dir(dir, 0o700).map_err(|source| PkiError::Write { path: dir.into(), source })?;
    let ca = cluster_authority(dir)?;
    let [serving_name, admin_name, kubelet_client_name, peer_name] = LEAF_NAMES;
    let serving = ca.ensure_leaf(
        dir,
        serving_name,
        &LeafSpec {
            common_name: "kube-apiserver".into(),
            organizations: vec![],
            dns_sans: dns_sans.to_vec(),
            ip_sans: ip_sans.to_vec(),
            server: true,
        },
    )?;
    let admin = ca.ensure_leaf(
        dir,
        admin_name,
        &LeafSpec {
            common_name: "system:admin".into(),
            organizations: vec!["system:masters".into()],
            dns_sans: vec![],
            ip_sans: vec![],
            server: false,
        },
    )?;
    let kubelet_client = ca.ensure_leaf(
        dir,
        kubelet_client_name,
        &LeafSpec {
            common_name: "kube-apiserver-kubelet-client".into(),
            organizations: vec!["system:masters".into()],
            dns_sans: vec![],
            ip_sans: vec![],
            server: false,
        },
    )?;
    let peer = ca.ensure_leaf(
        dir,
        peer_name,
        &LeafSpec {
            common_name: "tug-server".into(),
            organizations: vec![PEER_GROUP.into()],
            dns_sans: vec![],
            ip_sans: vec![],
            server: false,
        },
    )?;
    let ca_cert_pem = ca.cert_pem().to_string();
    Ok(ServerTls { ca_cert_pem, serving, admin, kubelet_client, peer, dir: dir.to_path_buf() })
}

/// What node `name`'s kubelet presents to the API server.
pub fn kubelet_client_spec(name: &str) -> LeafSpec {
    LeafSpec {
        common_name: format!("system:node:{name}"),
        organizations: vec!["system:nodes".into()],
        dns_sans: vec![],
        ip_sans: vec![],
        server: false,
    }
}

/// What node `name`'s kubelet serves its API with, at `ips`.
pub fn kubelet_serving_spec(name: &str, ips: &[IpAddr]) -> LeafSpec {
    LeafSpec {
        common_name: format!("system:node:{name}"),
        organizations: vec!["system:nodes".into()],
        dns_sans: vec![name.to_string()],
        ip_sans: ips.to_vec(),
        server: true,
    }
}

/// The serving certificate of node `name`'s kubelet at `ips`, signed by the cluster CA of `ca_dir` and
/// kept in `dir` (re-issued by the same rule as the server's leaves), with that CA's certificate PEM.
pub fn ensure_kubelet_serving(ca_dir: &Path, dir: &Path, name: &str, ips: &[IpAddr]) -> Result<(Leaf, String)> {
    crate::fsutil::create_private_dir(dir, 0o700).map_err(|source| PkiError::Write { path: dir.into(), source })?;
    let ca = cluster_authority(ca_dir)?;
    let [_, serving] = KUBELET_LEAF_NAMES;
    let leaf = ca.ensure_leaf(dir, serving, &kubelet_serving_spec(name, ips))?;
    Ok((leaf, ca.cert_pem().to_string()))
}
