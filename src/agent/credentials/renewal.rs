//! A running agent's kubelet certificates renewed: when those on disk are due (within 120 days of
//! expiry, or lacking an address) or `tug certificate rotate` asked, new keys are made in memory, their
//! CSRs posted to a server with the node's current client certificate (and the token, which need no
//! longer be valid), and the answer, once checked, written and put in use.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::files::{Files, Freshness, Keys, RENEW_MARK};
use crate::join::client::{self, ServerUrl};
use crate::join::Token;
use crate::pki::LiveIdentity;

/// What renewing a running agent's certificates takes.
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
    /// Renews the certificates when they are due or a renewal was asked for; whether it did.
    pub async fn renew_if_due(&self) -> anyhow::Result<bool> {
        let files = Files::of(&self.agent_dir)?;
        let (name, addresses) = (&self.name, &self.addresses[..]);
        let asked = files.path(RENEW_MARK).exists();
        if !asked && files.earlier(&self.token, name, addresses, Freshness::NotDue).is_some() {
            return Ok(false);
        }
        let ca_pem = files.ca().context("the cluster CA certificate is missing")?;
        let keys = Keys::generate()?;
        let request = files.request(&keys, name, addresses)?;
        let kubelet_client = files.client_identity(&ca_pem, name);
        let issued = client::request_credentials(&self.server, &self.token, &ca_pem, kubelet_client, &request).await?;
        anyhow::ensure!(
            issued.ca_cert == ca_pem,
            "the server's CA is not the one this node joined; restart the agent with the cluster's token to join again"
        );
        files.store(&issued, Some(&keys), name, addresses)?;
        let credentials = files.in_use(&self.server, &self.token, name, addresses)?;
        self.client.replace(&credentials.client.cert_pem, &credentials.client.key_pem)?;
        self.serving.replace(&credentials.serving.cert_pem, &credentials.serving.key_pem)?;
        if asked {
            std::fs::remove_file(files.path(RENEW_MARK)).context("cannot remove the renewal mark")?;
        }
        Ok(true)
    }
}
