//! The kubelet's certificates kept current while the node runs: checked every
//! `--certificate-check-interval`, re-issued when within 120 days of expiry, set aside by `tug
//! certificate rotate` or lacking an address, and put in use at once (the serving certificate by the
//! kubelet's API, the client certificate by the agent's API client). A joined agent asks a server,
//! authenticated by its current client certificate (`credentials::Renewal`); a server's own node signs
//! its serving certificate with the cluster CA on disk (its API client is in-process and has none).
//! Renewals and failures are Events on the Node.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;

use super::credentials;
use crate::events::{EventType, Recorder};
use crate::pki::{self, Leaf, LiveIdentity};

/// Where a node's new certificates come from.
pub enum Renewer {
    Joined(credentials::Renewal),
    OwnNode(OwnNode),
}

/// Where a server's own node keeps its kubelet serving certificate, and what it covers.
#[derive(Debug, Clone)]
pub struct OwnNodeServing {
    /// The server's TLS dir, with the cluster CA.
    pub ca_dir: PathBuf,
    /// The node's TLS dir.
    pub dir: PathBuf,
    pub name: String,
    pub ips: Vec<IpAddr>,
}

impl OwnNodeServing {
    /// The certificate (issued now when due), with the CA's certificate PEM.
    pub fn ensure(&self) -> pki::Result<(Leaf, String)> {
        pki::ensure_kubelet_serving(&self.ca_dir, &self.dir, &self.name, &self.ips)
    }
}

/// A server's own node's serving certificate in use.
pub struct OwnNode {
    pub serving: OwnNodeServing,
    /// The certificate PEM in use.
    pub current: String,
    pub identity: Arc<LiveIdentity>,
}

impl Renewer {
    /// Renews what is due and puts it in use; whether anything was.
    async fn renew_if_due(&mut self) -> anyhow::Result<bool> {
        match self {
            Renewer::Joined(renewal) => renewal.renew_if_due().await,
            Renewer::OwnNode(own) => {
                let (leaf, _) = own.serving.ensure()?;
                if leaf.cert_pem == own.current {
                    return Ok(false);
                }
                own.identity.replace(&leaf.cert_pem, &leaf.key_pem)?;
                own.current = leaf.cert_pem;
                Ok(true)
            }
        }
    }
}

/// After a failed renewal, the next try comes this soon (or at the next check, if sooner).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Checks now (a node may have started on certificates due for renewal), then every `every` (a minute
/// after a failure), until the task is dropped. Each renewal, and each failure, is an Event on node
/// `node` (through `client`), as the kubelet's own events are.
pub async fn run(mut renewer: Renewer, every: Duration, client: kube::Client, node: String) {
    let recorder = Recorder::new(client, "kubelet");
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.clone()),
        uid: Some(node),
        ..Default::default()
    };
    loop {
        let next = match renewer.renew_if_due().await {
            Ok(renewed) => {
                if renewed {
                    let message = "renewed the kubelet's certificates and put them in use";
                    tracing::info!("{message}");
                    recorder.record(&regarding, EventType::Normal, "CertificateRenewed", message).await;
                }
                every
            }
            Err(error) => {
                let retry_in = every.min(RETRY_AFTER_FAILURE);
                tracing::warn!(error = format!("{error:#}"), ?retry_in, "cannot renew the kubelet's certificates");
                let message = format!("cannot renew the kubelet's certificates: {error:#}");
                recorder.record(&regarding, EventType::Warning, "CertificateRenewalFailed", &message).await;
                retry_in
            }
        };
        tokio::time::sleep(next).await;
    }
}
