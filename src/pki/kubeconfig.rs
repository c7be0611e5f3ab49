//! Writing a kubeconfig for the admin user: the CA, the server URL and the client certificate embedded,
//! written atomically with the requested mode (0600 by default).

use std::path::Path;

use base64::Engine;
use serde_json::json;

use super::{Leaf, PkiError, Result};

/// Writes a kubeconfig at `path` that reaches `server` as the holder of `client`.
pub fn write_kubeconfig(path: &Path, server: &str, ca_pem: &str, client: &Leaf, mode: u32) -> Result<()> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        "current-context": "default",
        "preferences": {},
        "users": [{"name": "default", "user": {
            "client-certificate-data": b64(&client.cert_pem),
            "client-key-data": b64(&client.key_pem),
        }}],
    });
    let text = serde_yaml::to_string(&config)
        .map_err(|e| PkiError::Write { path: path.into(), source: std::io::Error::other(e) })?;
    crate::fsutil::write_atomic(path, text.as_bytes(), mode)
        .map_err(|source| PkiError::Write { path: path.into(), source })
}
