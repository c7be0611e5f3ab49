//! The service account signing key (`service.key`, ECDSA P-256, PKCS#8 PEM, mode 0600) next to the
//! cluster CA: made on first start, reused afterwards, so tokens stay valid across restarts.

use std::path::Path;

use rcgen::KeyPair;

use super::authority::{read, write};
use super::{PkiError, Result};

/// The key file's name in the TLS directory (as k3s names its own).
pub const SERVICE_KEY_FILE: &str = "service.key";

/// Loads `service.key` from `dir`, or creates it.
pub fn service_account_key(dir: &Path) -> Result<KeyPair> {
    let path = dir.join(SERVICE_KEY_FILE);
    if let Some(pem) = read(&path)? {
        return KeyPair::from_pem(&pem).map_err(|e| PkiError::BadCertificate { path, reason: e.to_string() });
    }
    let key = KeyPair::generate()?;
    write(&path, &key.serialize_pem(), 0o600)?;
    tracing::info!(path = %path.display(), "created the service account signing key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = service_account_key(dir.path()).expect("created");
        let second = service_account_key(dir.path()).expect("loaded");
        assert_eq!(first.public_key_raw(), second.public_key_raw());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SERVICE_KEY_FILE)).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
