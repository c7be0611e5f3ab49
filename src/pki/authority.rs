//! A certificate authority on disk (`<name>.crt`, `<name>.key`) and the leaves it issues, with the
//! reuse-or-reissue rule for leaves (expiry within 120 days, or a SAN missing).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::{PkiError, Result};
use crate::fsutil::write_atomic;

const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A leaf this close to expiry is re-issued at start.
pub const RENEW_BEFORE: Duration = Duration::from_secs(120 * 24 * 3600);

/// What a leaf must say.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_sans: Vec<String>,
    pub ip_sans: Vec<IpAddr>,
    /// Serving (server auth) rather than client auth.
    pub server: bool,
}

/// An issued leaf, as PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A loaded CA.
pub struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub(super) fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read { path: path.into(), source }),
    }
}

pub(super) fn write(path: &Path, contents: &str, mode: u32) -> Result<()> {
    write_atomic(path, contents.as_bytes(), mode).map_err(|source| PkiError::Write { path: path.into(), source })
}

fn validity(lifetime: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    // Back-date a little so that a peer whose clock is slightly behind accepts the certificate.
    (now - time::Duration::hours(1), now + lifetime)
}

impl Authority {
    /// Loads `<name>.crt`/`<name>.key` from `dir`, or creates a new self-signed CA there.
    pub fn load_or_create(dir: &Path, name: &str, common_name: &str) -> Result<Authority> {
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
            let key = KeyPair::from_pem(&key_pem)
                .map_err(|e| PkiError::BadCertificate { path: key_path.clone(), reason: e.to_string() })?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
                .map_err(|e| PkiError::BadCertificate { path: cert_path.clone(), reason: e.to_string() })?;
            return Ok(Authority { cert_pem, issuer });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{common_name}@{}", OffsetDateTime::now_utc().unix_timestamp()));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = validity(CA_LIFETIME);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        write(&key_path, &key.serialize_pem(), 0o600)?;
        write(&cert_path, &cert_pem, 0o644)?;
        tracing::info!(path = %cert_path.display(), "created certificate authority");
        Ok(Authority { cert_pem, issuer: Issuer::new(params, key) })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Reuses `<name>.crt`/`.key` in `dir` if it is still good for `spec`, else issues and writes a new one.
    pub fn ensure_leaf(&self, dir: &Path, name: &str, spec: &LeafSpec) -> Result<Leaf> {
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
            match still_good(&cert_pem, spec) {
                Ok(true) => return Ok(Leaf { cert_pem, key_pem }),
                Ok(false) => tracing::info!(cert = name, "re-issuing certificate (expiring soon or SANs changed)"),
                Err(reason) => {
                    tracing::warn!(cert = name, %reason, "re-issuing unreadable certificate")
                }
            }
        }
        let leaf = self.issue(spec)?;
        write(&key_path, &leaf.key_pem, 0o600)?;
        write(&cert_path, &leaf.cert_pem, 0o644)?;
        Ok(leaf)
    }

    /// Issues a new leaf for `spec`.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Leaf> {
        let key = KeyPair::generate()?;
        let cert = leaf_params(spec)?.signed_by(&key, &self.issuer)?;
        Ok(Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Signs a certificate for `spec` over the public key of the PEM certificate signing request `csr_pem`
    /// (whose signature proves its sender holds the key); what the request asks for beyond its key is
    /// ignored. Returns the certificate, PEM.
    pub fn sign_request(&self, spec: &LeafSpec, csr_pem: &str) -> Result<String> {
        let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        Ok(leaf_params(spec)?.signed_by(&request.public_key, &self.issuer)?.pem())
    }
}

/// A leaf's certificate parameters: its subject, SANs and usage, valid for [`LEAF_LIFETIME`].
fn leaf_params(spec: &LeafSpec) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.common_name.clone());
    for org in &spec.organizations {
        dn.push(DnType::OrganizationName, org.clone());
    }
    params.distinguished_name = dn;
    for name in &spec.dns_sans {
        let dns = name.clone().try_into().map_err(|_| PkiError::BadSan(name.clone()))?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    params.subject_alt_names.extend(spec.ip_sans.iter().map(|ip| SanType::IpAddress(*ip)));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages =
        vec![if spec.server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity(LEAF_LIFETIME);
    Ok(params)
}

/// Whether an existing leaf is far enough from expiry and covers every SAN `spec` asks for.
pub fn still_good(cert_pem: &str, spec: &LeafSpec) -> std::result::Result<bool, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let not_after = cert.validity().not_after.timestamp();
    if not_after <= renew_at().unix_timestamp() {
        return Ok(false);
    }
    let mut have_dns = BTreeSet::new();
    let mut have_ips = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    have_dns.insert(d.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        have_ips.insert(ip);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(spec.dns_sans.iter().all(|d| have_dns.contains(d)) && spec.ip_sans.iter().all(|ip| have_ips.contains(ip)))
}

/// Whether a PEM certificate has not expired yet.
pub fn unexpired(cert_pem: &str) -> bool {
    describe(cert_pem).is_ok_and(|(_, not_after)| not_after > OffsetDateTime::now_utc())
}

/// The moment from which a leaf expiring before it is renewed: now plus [`RENEW_BEFORE`].
pub fn renew_at() -> OffsetDateTime {
    OffsetDateTime::now_utc() + RENEW_BEFORE
}

/// A PEM certificate's subject common name and expiry.
pub fn describe(cert_pem: &str) -> std::result::Result<(String, OffsetDateTime), String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("").to_string();
    Ok((name, cert.validity().not_after.to_datetime()))
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dns: &[&str]) -> LeafSpec {
        LeafSpec {
            common_name: "kube-apiserver".into(),
            organizations: vec![],
            dns_sans: dns.iter().map(|s| s.to_string()).collect(),
            ip_sans: vec!["127.0.0.1".parse().expect("ip")],
            server: true,
        }
    }

    #[test]
    fn leaves_are_reused_until_a_san_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::load_or_create(dir.path(), "ca", "test-ca").expect("ca");
        let first = ca.ensure_leaf(dir.path(), "leaf", &spec(&["kubernetes"])).expect("leaf");
        let reloaded = Authority::load_or_create(dir.path(), "ca", "test-ca").expect("reload ca");
        assert_eq!(reloaded.cert_pem(), ca.cert_pem());
        let again = reloaded.ensure_leaf(dir.path(), "leaf", &spec(&["kubernetes"])).expect("leaf");
        assert_eq!(again.cert_pem, first.cert_pem);
        let widened = reloaded.ensure_leaf(dir.path(), "leaf", &spec(&["kubernetes", "extra.example"])).expect("leaf");
        assert_ne!(widened.cert_pem, first.cert_pem);
        assert_eq!(still_good(&widened.cert_pem, &spec(&["kubernetes", "extra.example"])), Ok(true));
    }

    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::load_or_create(dir.path(), "ca", "test-ca").expect("ca");
        ca.ensure_leaf(dir.path(), "leaf", &spec(&[])).expect("leaf");
        for key in ["ca.key", "leaf.key"] {
            let mode = std::fs::metadata(dir.path().join(key)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}
