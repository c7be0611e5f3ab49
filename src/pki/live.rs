//! A certificate in use that can be replaced while connections are being made: what the API server
//! serves with and what it presents to kubelets and to the other servers, so that a certificate renewed
//! while tug runs is used from the next handshake on, without a restart.

use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The current certificate and key of one identity.
#[derive(Debug)]
pub struct LiveIdentity {
    current: RwLock<Arc<CertifiedKey>>,
}

/// Why a PEM certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("unusable key: {0}")]
    Key(#[from] rustls::Error),
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, IdentityError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| IdentityError::Pem(e.to_string()))?;
    let signing_key = rustls::crypto::ring::default_provider().key_provider.load_private_key(key)?;
    let certified = CertifiedKey::new(chain, signing_key);
    // A certificate with another key than its own (a pair half replaced) would fail every handshake.
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(IdentityError::Pem("the certificate is not of this private key".into()))
        }
        _ => Ok(Arc::new(certified)),
    }
}

impl LiveIdentity {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<LiveIdentity>, IdentityError> {
        Ok(Arc::new(LiveIdentity { current: RwLock::new(certified_key(cert_pem, key_pem)?) }))
    }

    /// Uses `cert_pem`/`key_pem` from the next handshake on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), IdentityError> {
        let key = certified_key(cert_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = key;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl ResolvesServerCert for LiveIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for LiveIdentity {
    fn resolve(&self, _issuers: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
