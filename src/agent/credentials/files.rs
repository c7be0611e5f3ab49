//! The agent's credential files under `<data-dir>/agent/`: `tls/` with the cluster CA, the kubelet's
//! keys and certificates (and `renew-requested`, the mark `tug certificate rotate` leaves), the node
//! password, the cluster's network settings and the kubelet kubeconfig (for operators). Certificates are
//! checked in memory before they are written, each file replaced atomically.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{CertificateParams, KeyPair};

use super::NodeCredentials;
use crate::join::client::ServerUrl;
use crate::join::{Credentials, CredentialsRequest, Token};
use crate::pki::{self, Leaf, LiveIdentity, KUBELET_LEAF_NAMES};

/// The cluster's network settings from the last join, under the agent dir.
const NETWORK_FILE: &str = "cluster-network.json";
const CA_FILE: &str = "server-ca.crt";
/// Left in the TLS dir by `tug certificate rotate`: the agent renews at its next check or start.
pub const RENEW_MARK: &str = "renew-requested";
/// The suffix of a key or certificate written but not yet put in place.
const STAGED: &str = ".next";

/// How far from expiry certificates on disk must be to be used.
#[derive(Clone, Copy, PartialEq)]
pub enum Freshness {
    /// Not due for renewal (more than 120 days left) and covering the node's addresses.
    NotDue,
    /// Not expired: good to start on, to be renewed soon.
    Unexpired,
}

/// The kubelet's private keys.
pub struct Keys {
    client: KeyPair,
    serving: KeyPair,
}

impl Keys {
    pub fn generate() -> anyhow::Result<Keys> {
        Ok(Keys { client: KeyPair::generate()?, serving: KeyPair::generate()? })
    }
}

/// The agent's credential files.
pub struct Files {
    agent_dir: PathBuf,
    tls_dir: PathBuf,
}

impl Files {
    pub fn of(agent_dir: &Path) -> anyhow::Result<Files> {
        let files = Files { agent_dir: agent_dir.to_path_buf(), tls_dir: agent_dir.join("tls") };
        crate::fsutil::create_private_dir(&files.tls_dir, 0o700)?;
        files.finish_staged()?;
        Ok(files)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tls_dir.join(name)
    }

    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok()
    }

    fn write(&self, name: &str, contents: &str, mode: u32) -> anyhow::Result<()> {
        let path = self.path(name);
        crate::fsutil::write_atomic(&path, contents.as_bytes(), mode)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn ca(&self) -> Option<String> {
        self.read(CA_FILE)
    }

    /// The keys kept from earlier starts, each made (and kept) when missing.
    pub fn keys(&self) -> anyhow::Result<Keys> {
        let [client, serving] = KUBELET_LEAF_NAMES.map(|name| -> anyhow::Result<KeyPair> {
            let file = format!("{name}.key");
            if let Some(key) = self.read(&file).and_then(|pem| KeyPair::from_pem(&pem).ok()) {
                return Ok(key);
            }
            let key = KeyPair::generate()?;
            self.write(&file, &key.serialize_pem(), 0o600)?;
            Ok(key)
        });
        Ok(Keys { client: client?, serving: serving? })
    }

    /// A request for certificates of `keys`.
    pub fn request(&self, keys: &Keys, name: &str, addresses: &[IpAddr]) -> anyhow::Result<CredentialsRequest> {
        Ok(CredentialsRequest {
            node_name: name.to_string(),
            node_password: node_password(&self.agent_dir)?,
            addresses: addresses.to_vec(),
            client_csr: CertificateParams::default().serialize_request(&keys.client)?.pem()?,
            serving_csr: CertificateParams::default().serialize_request(&keys.serving)?.pem()?,
        })
    }

    /// The kubelet's client certificate on disk, if it is node `name`'s, of the cluster CA `ca_pem`,
    /// unexpired and of its key: what proves the node's name to a server when the token no longer does.
    pub fn client_identity(&self, ca_pem: &str, name: &str) -> Option<Arc<LiveIdentity>> {
        if self.ca().as_deref() != Some(ca_pem) {
            return None;
        }
        let [client, _] = KUBELET_LEAF_NAMES;
        let leaf = self.leaf(client, &pki::kubelet_client_spec(name), Freshness::Unexpired)?;
        LiveIdentity::from_pem(&leaf.cert_pem, &leaf.key_pem).ok()
    }

    /// Leaf `leaf`'s certificate and key, if the certificate is for `spec`'s subject, of that key and as
    /// fresh as asked.
    fn leaf(&self, leaf: &str, spec: &pki::LeafSpec, freshness: Freshness) -> Option<Leaf> {
        let cert_pem = self.read(&format!("{leaf}.crt"))?;
        let key_pem = self.read(&format!("{leaf}.key"))?;
        let fresh = match freshness {
            Freshness::NotDue => pki::still_good(&cert_pem, spec).ok()?,
            Freshness::Unexpired => pki::unexpired(&cert_pem),
        };
        let (subject, _) = pki::describe(&cert_pem).ok()?;
        let paired = LiveIdentity::from_pem(&cert_pem, &key_pem).is_ok();
        (fresh && paired && subject == spec.common_name).then_some(Leaf { cert_pem, key_pem })
    }

    /// Keeps what the server issued, with `keys` when they are new, once the certificates are checked
    /// to be for this node, its addresses and those keys.
    pub fn store(
        &self,
        issued: &Credentials,
        new_keys: Option<&Keys>,
        name: &str,
        addresses: &[IpAddr],
    ) -> anyhow::Result<()> {
        let keys = match new_keys {
            Some(keys) => [keys.client.serialize_pem(), keys.serving.serialize_pem()],
            None => KUBELET_LEAF_NAMES.map(|name| self.read(&format!("{name}.key")).unwrap_or_default()),
        };
        let certs = [&issued.client_cert, &issued.serving_cert];
        let specs = [pki::kubelet_client_spec(name), pki::kubelet_serving_spec(name, addresses)];
        for ((cert, key), spec) in certs.iter().zip(&keys).zip(&specs) {
            let subject = pki::describe(cert).map(|(subject, _)| subject).unwrap_or_default();
            anyhow::ensure!(
                subject == spec.common_name && pki::still_good(cert, spec).unwrap_or(false),
                "the server issued a certificate that is not for {name} at {addresses:?}"
            );
            LiveIdentity::from_pem(cert, key)
                .context("the server issued a certificate that is not of the node's key")?;
        }
        // Each pair staged whole, then put in place (finished by `Files::of` after a crash): a key never
        // sits beside another key's certificate.
        for ((leaf, cert), key) in KUBELET_LEAF_NAMES.iter().zip(certs).zip(&keys) {
            if new_keys.is_some() {
                self.write(&format!("{leaf}.key{STAGED}"), key, 0o600)?;
            }
            self.write(&format!("{leaf}.crt{STAGED}"), cert, 0o644)?;
        }
        self.finish_staged()?;
        let network = serde_json::to_vec_pretty(&issued.network)?;
        crate::fsutil::write_atomic(&self.agent_dir.join(NETWORK_FILE), &network, 0o644)
            .with_context(|| format!("cannot write {NETWORK_FILE}"))?;
        // Last: until it is written, a new cluster's certificates are not taken for this CA's.
        self.write(CA_FILE, &issued.ca_cert, 0o644)
    }

    /// Puts staged pairs in place: a staged certificate's key first (when staged too), then the
    /// certificate; a staged key without its certificate (a store cut short) is dropped.
    fn finish_staged(&self) -> anyhow::Result<()> {
        for leaf in KUBELET_LEAF_NAMES {
            let (key, cert) = (format!("{leaf}.key"), format!("{leaf}.crt"));
            let staged = |file: &str| self.path(&format!("{file}{STAGED}"));
            if !staged(&cert).exists() {
                let _ = std::fs::remove_file(staged(&key));
                continue;
            }
            for file in [&key, &cert] {
                match std::fs::rename(staged(file), self.path(file)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("cannot put {file} in place"))
                    }
                    _ => {}
                }
            }
        }
        crate::fsutil::sync_dir(&self.tls_dir).with_context(|| format!("cannot sync {}", self.tls_dir.display()))
    }

    /// The certificates on disk, if they are as fresh as asked and from the token's cluster.
    pub fn earlier(
        &self,
        token: &Token,
        name: &str,
        addresses: &[IpAddr],
        freshness: Freshness,
    ) -> Option<NodeCredentials> {
        let ca_pem = self.ca()?;
        if token.ca_hash.as_ref().is_some_and(|hash| *hash != crate::join::token::ca_hash(ca_pem.as_bytes())) {
            return None;
        }
        let network = serde_json::from_str(&std::fs::read_to_string(self.agent_dir.join(NETWORK_FILE)).ok()?).ok()?;
        let [client, serving] = KUBELET_LEAF_NAMES;
        Some(NodeCredentials {
            network,
            client: self.leaf(client, &pki::kubelet_client_spec(name), freshness)?,
            serving: self.leaf(serving, &pki::kubelet_serving_spec(name, addresses), freshness)?,
            kubeconfig: self.agent_dir.join("kubelet.kubeconfig"),
            ca_pem,
        })
    }

    /// The certificates on disk (unexpired), with the kubelet kubeconfig written for them.
    pub fn in_use(
        &self,
        server: &ServerUrl,
        token: &Token,
        name: &str,
        addresses: &[IpAddr],
    ) -> anyhow::Result<NodeCredentials> {
        let credentials = self
            .earlier(token, name, addresses, Freshness::Unexpired)
            .context("the node's credentials on disk are not usable")?;
        pki::write_kubeconfig(
            &credentials.kubeconfig,
            &server.to_string(),
            &credentials.ca_pem,
            &credentials.client,
            0o600,
        )?;
        Ok(credentials)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Authority;

    #[test]
    fn issued_certificates_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::of(&dir.path().join("agent")).unwrap();
        let ca = Authority::load_or_create(dir.path(), "ca", "test-ca").unwrap();
        let ips = [IpAddr::from([10, 0, 0, 2])];
        let keys = Keys::generate().unwrap();
        let request = files.request(&keys, "edge-1", &ips).unwrap();
        let issued = |node: &str| Credentials {
            client_cert: ca.sign_request(&pki::kubelet_client_spec(node), &request.client_csr).unwrap(),
            serving_cert: ca.sign_request(&pki::kubelet_serving_spec(node, &ips), &request.serving_csr).unwrap(),
            ca_cert: ca.cert_pem().to_string(),
            network: crate::network::ClusterNetwork::default(),
        };
        let refused = files.store(&issued("edge-2"), Some(&keys), "edge-1", &ips).unwrap_err().to_string();
        assert!(refused.contains("not for edge-1"), "{refused}");
        let other_keys = Keys::generate().unwrap();
        let refused = files.store(&issued("edge-1"), Some(&other_keys), "edge-1", &ips).unwrap_err();
        assert!(format!("{refused:#}").contains("not of the node's key"), "{refused:#}");
        assert!(files.ca().is_none() && std::fs::read_dir(&files.tls_dir).unwrap().next().is_none(), "nothing written");

        files.store(&issued("edge-1"), Some(&keys), "edge-1", &ips).unwrap();
        let token = Token::for_ca(ca.cert_pem(), "secret");
        assert!(files.earlier(&token, "edge-1", &ips, Freshness::NotDue).is_some());
        assert!(files.earlier(&token, "edge-1", &[IpAddr::from([10, 0, 0, 3])], Freshness::NotDue).is_none());
        assert!(files.earlier(&token, "edge-1", &[IpAddr::from([10, 0, 0, 3])], Freshness::Unexpired).is_some());
        assert!(files.client_identity(ca.cert_pem(), "edge-1").is_some());
        assert!(
            files.client_identity("another CA", "edge-1").is_none(),
            "a certificate of another CA is not presented"
        );
        assert!(files.client_identity(ca.cert_pem(), "edge-2").is_none(), "nor one of another node name");
        assert!(files.earlier(&token, "edge-2", &ips, Freshness::Unexpired).is_none());

        // A store cut short between a staged key and its certificate: the pair on disk stays whole.
        let newer = Keys::generate().unwrap();
        std::fs::write(files.path("client-kubelet.key.next"), newer.client.serialize_pem()).unwrap();
        let files = Files::of(&dir.path().join("agent")).unwrap();
        assert!(!files.path("client-kubelet.key.next").exists(), "the lone staged key is dropped");
        assert!(files.client_identity(ca.cert_pem(), "edge-1").is_some());
        // Cut short between putting the key and its certificate in place: finished at the next start.
        let reissue = files.request(&newer, "edge-1", &ips).unwrap();
        let cert = ca.sign_request(&pki::kubelet_client_spec("edge-1"), &reissue.client_csr).unwrap();
        std::fs::write(files.path("client-kubelet.key"), newer.client.serialize_pem()).unwrap();
        std::fs::write(files.path("client-kubelet.crt.next"), &cert).unwrap();
        assert!(files.client_identity(ca.cert_pem(), "edge-1").is_none(), "a key beside another key's certificate");
        let files = Files::of(&dir.path().join("agent")).unwrap();
        assert_eq!(files.read("client-kubelet.crt").unwrap(), cert);
        assert!(files.client_identity(ca.cert_pem(), "edge-1").is_some());
        assert!(files.earlier(&token, "edge-1", &ips, Freshness::NotDue).is_some());
    }
}
