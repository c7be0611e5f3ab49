//! Certificate upkeep while the server runs: at every check (`--certificate-check-interval`, 12 h by
//! default) the leaves are re-issued when within 120 days of expiry or lacking a SAN now wanted
//! (`pki::ensure_server_tls`, the rule of a start), put in use at once through their live identities,
//! and the admin kubeconfig rewritten, each renewal a Normal Event `CertificateRenewed`. A CA within a
//! year of expiry gets a Warning Event `CAExpiring` at every check (its rotation is documented in
//! docs/operations.md). Events are on the kube-system Namespace.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{EventType, Recorder};
use crate::pki::{LiveIdentity, ServerTls};

/// A CA this close to expiry is warned about.
const CA_WARN_BEFORE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The certificates the running server uses, each replaceable.
pub struct Identities {
    pub serving: Arc<LiveIdentity>,
    pub kubelet_client: Arc<LiveIdentity>,
    pub peer: Arc<LiveIdentity>,
}

impl Identities {
    pub fn new(tls: &ServerTls) -> Result<Identities, crate::pki::IdentityError> {
        Ok(Identities {
            serving: LiveIdentity::from_pem(&tls.serving.cert_pem, &tls.serving.key_pem)?,
            kubelet_client: LiveIdentity::from_pem(&tls.kubelet_client.cert_pem, &tls.kubelet_client.key_pem)?,
            peer: LiveIdentity::from_pem(&tls.peer.cert_pem, &tls.peer.key_pem)?,
        })
    }
}

/// Where the admin kubeconfig goes and what it says.
pub struct AdminKubeconfig {
    pub path: PathBuf,
    pub server_url: String,
    pub mode: u32,
}

impl AdminKubeconfig {
    /// Writes it for the admin certificate of `tls`.
    pub fn write(&self, tls: &ServerTls) -> crate::pki::Result<()> {
        crate::pki::write_kubeconfig(&self.path, &self.server_url, &tls.ca_cert_pem, &tls.admin, self.mode)
    }
}

/// What the upkeep needs.
pub struct Upkeep {
    pub tls: ServerTls,
    pub dns_sans: Vec<String>,
    pub ip_sans: Vec<IpAddr>,
    pub identities: Identities,
    pub kubeconfig: AdminKubeconfig,
    pub every: Duration,
}

/// Checks every `upkeep.every` until dropped.
pub async fn run(mut upkeep: Upkeep, client: kube::Client) {
    let recorder = Recorder::new(client, "tug-certificates");
    let kube_system = crate::events::kube_system_namespace();
    loop {
        tokio::time::sleep(upkeep.every).await;
        match renew(&mut upkeep) {
            Ok(renewed) => {
                for name in renewed {
                    tracing::info!(certificate = name, "renewed a certificate and put it in use");
                    let message = format!(
                        "renewed {name} (within {} days of expiry, or its SANs changed)",
                        crate::pki::RENEW_BEFORE.as_secs() / 86400
                    );
                    recorder.record(&kube_system, EventType::Normal, "CertificateRenewed", &message).await;
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot renew the certificates");
                let message = format!("cannot renew the certificates: {error:#}");
                recorder.record(&kube_system, EventType::Warning, "CertificateRenewalFailed", &message).await;
            }
        }
        if let Some(message) = ca_expiring(&upkeep.tls.ca_cert_pem) {
            tracing::warn!("{message}");
            recorder.record(&kube_system, EventType::Warning, "CAExpiring", &message).await;
        }
    }
}

/// Re-issues what is due and puts it in use; the names of the renewed certificates.
fn renew(upkeep: &mut Upkeep) -> anyhow::Result<Vec<&'static str>> {
    let fresh = crate::pki::ensure_server_tls(&upkeep.tls.dir, &upkeep.dns_sans, &upkeep.ip_sans)?;
    let mut renewed = Vec::new();
    let [serving, admin, kubelet_client, peer] = crate::pki::LEAF_NAMES;
    let identities = &upkeep.identities;
    let live = [
        (serving, &upkeep.tls.serving, &fresh.serving, &identities.serving),
        (kubelet_client, &upkeep.tls.kubelet_client, &fresh.kubelet_client, &identities.kubelet_client),
        (peer, &upkeep.tls.peer, &fresh.peer, &identities.peer),
    ];
    for (name, old, new, identity) in live {
        if old.cert_pem != new.cert_pem {
            identity.replace(&new.cert_pem, &new.key_pem)?;
            renewed.push(name);
        }
    }
    if upkeep.tls.admin.cert_pem != fresh.admin.cert_pem {
        upkeep.kubeconfig.write(&fresh)?;
        renewed.push(admin);
    }
    upkeep.tls = fresh;
    Ok(renewed)
}

/// The warning for a CA within [`CA_WARN_BEFORE`] of expiry, if it is.
fn ca_expiring(ca_pem: &str) -> Option<String> {
    let (_, not_after) = crate::pki::describe(ca_pem).ok()?;
    (not_after <= time::OffsetDateTime::now_utc() + CA_WARN_BEFORE).then(|| {
        format!("the cluster CA expires at {not_after}; rotate it before then (docs/operations.md, \"Certificates\")")
    })
}
