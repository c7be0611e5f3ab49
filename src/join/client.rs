//! The joining node's end: fetch the CA without trusting it and check it against the token, then ask
//! for node credentials over TLS verified by that CA.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;

use super::{token, Credentials, CredentialsRequest, Token, CACERTS_PATH, NODE_CREDENTIALS_PATH};
use crate::http_client;
use crate::pki::LiveIdentity;

/// Largest answer read from the server.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a join did not go through.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Worth trying again: the server is unreachable or failed.
    #[error("cannot reach the server {0}")]
    Unreachable(String),
    #[error(
        "the server's CA certificate (sha256 {served}) does not match the token's CA hash {expected}: \
         wrong token, or not the server it was made for"
    )]
    CaMismatch { served: String, expected: String },
    #[error("the server refused the token: {0}")]
    Unauthorized(String),
    /// Worth trying again: a node of that name is alive with another password.
    #[error("{0}")]
    PasswordRejected(String),
    #[error("the server refused the join: {0}")]
    Refused(String),
}

impl JoinError {
    /// Whether waiting and trying again may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, JoinError::Unreachable(_) | JoinError::PasswordRejected(_))
    }
}

/// Where the server is: `https://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    pub host: String,
    pub port: u16,
}

impl ServerUrl {
    pub fn parse(text: &str) -> Result<ServerUrl, String> {
        let uri: http::Uri = text.trim_end_matches('/').parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err("must start with https://".into());
        }
        if !matches!(uri.path(), "" | "/") {
            return Err("must be https://HOST:PORT with no path".into());
        }
        let authority = uri.authority().ok_or("no host")?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(ServerUrl { host, port: authority.port_u16().unwrap_or(6443) })
    }

    /// `host:port`.
    pub fn authority(&self) -> String {
        crate::core::net::join_host_port(&self.host, self.port)
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}", self.authority())
    }
}

/// Fetches the server's CA without trusting the connection, then checks it against the token's hash
/// (a short token has none: the CA is then trusted on first use, with a warning).
pub async fn fetch_ca(server: &ServerUrl, token: &Token) -> Result<String, JoinError> {
    let request = http::Request::get(CACERTS_PATH).header(http::header::HOST, server.authority());
    let body = exchange(server, http_client::trusting_any_server(), request, Full::default()).await?;
    let served = token::ca_hash(&body);
    match &token.ca_hash {
        Some(expected) if *expected != served => {
            return Err(JoinError::CaMismatch { served, expected: expected.clone() });
        }
        Some(_) => {}
        None => tracing::warn!(
            ca_hash = %served,
            "the token has no CA hash, so the server's CA is trusted without being checked; use the full token \
             from the server's <data-dir>/server/token"
        ),
    }
    String::from_utf8(body.to_vec()).map_err(|_| JoinError::Refused("the CA certificate is not text".into()))
}

/// Asks the server for node credentials over TLS verified by `ca_pem`, with the token and, for a node
/// renewing them, the kubelet's current client certificate (which the server accepts when the token
/// no longer is).
pub async fn request_credentials(
    server: &ServerUrl,
    token: &Token,
    ca_pem: &str,
    kubelet_client: Option<Arc<LiveIdentity>>,
    request: &CredentialsRequest,
) -> Result<Credentials, JoinError> {
    let http_request =
        authorized_post(NODE_CREDENTIALS_PATH, server, token).header(http::header::CONTENT_TYPE, "application/json");
    let body = serde_json::to_vec(request).map_err(|e| JoinError::Refused(e.to_string()))?;
    let tls = match kubelet_client {
        Some(identity) => crate::apiserver::serve::client_tls_config_with(ca_pem, identity)
            .map(Arc::new)
            .map_err(|e| JoinError::Refused(format!("the server's CA certificate cannot be used: {e}")))?,
        None => verifying(ca_pem)?,
    };
    let answer = exchange(server, tls, http_request, Full::new(Bytes::from(body))).await?;
    serde_json::from_slice(&answer).map_err(|e| JoinError::Refused(format!("unexpected answer: {e}")))
}

/// Asks the server for the cluster's shared files (a joining server), over TLS verified by `ca_pem`.
pub async fn fetch_server_bootstrap(
    server: &ServerUrl,
    token: &Token,
    ca_pem: &str,
) -> Result<super::ServerBootstrap, JoinError> {
    let request = authorized_post(super::SERVER_BOOTSTRAP_PATH, server, token);
    let answer = exchange(server, verifying(ca_pem)?, request, Full::default()).await?;
    serde_json::from_slice(&answer).map_err(|e| JoinError::Refused(format!("unexpected answer: {e}")))
}

/// A POST to `path` with the token as HTTP basic credentials.
fn authorized_post(path: &str, server: &ServerUrl, token: &Token) -> http::request::Builder {
    let credentials = format!("{}:{}", token.user, token.secret);
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
    http::Request::post(path).header(http::header::HOST, server.authority()).header(http::header::AUTHORIZATION, basic)
}

/// A TLS client trusting only the CA of `ca_pem`.
fn verifying(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, JoinError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(
        rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()).filter_map(Result::ok),
    );
    if added == 0 {
        return Err(JoinError::Refused("the server's CA certificate cannot be parsed".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// How long one request to the server may take before the server counts as unreachable.
const EXCHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One request to the server, within [`EXCHANGE_TIMEOUT`]; a non-2xx answer becomes the error its
/// status means.
async fn exchange(
    server: &ServerUrl,
    tls: Arc<rustls::ClientConfig>,
    request: http::request::Builder,
    body: Full<Bytes>,
) -> Result<Bytes, JoinError> {
    let timed_out = || JoinError::Unreachable(format!("{server}: no answer within {EXCHANGE_TIMEOUT:?}"));
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange_once(server, tls, request, body)).await.map_err(|_| timed_out())?
}

async fn exchange_once(
    server: &ServerUrl,
    tls: Arc<rustls::ClientConfig>,
    request: http::request::Builder,
    body: Full<Bytes>,
) -> Result<Bytes, JoinError> {
    let unreachable = |e: String| JoinError::Unreachable(format!("{server}: {e}"));
    let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let stream = http_client::tls(tcp, &server.host, tls).await.map_err(unreachable)?;
    let request = request.body(body).map_err(|e| JoinError::Refused(e.to_string()))?;
    let response = http_client::send(stream, request).await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = http_client::body(response, MAX_RESPONSE_BYTES).await.map_err(unreachable)?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|status| status["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    Err(match status {
        401 => JoinError::Unauthorized(message),
        403 => JoinError::PasswordRejected(message),
        409 | 500.. => JoinError::Unreachable(format!("{server}: {message}")),
        _ => JoinError::Refused(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_https_host_and_port() {
        let url = ServerUrl::parse("https://10.0.0.1:6443/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("10.0.0.1", 6443));
        assert_eq!(ServerUrl::parse("https://[fd00::1]").unwrap().to_string(), "https://[fd00::1]:6443");
        assert!(ServerUrl::parse("http://10.0.0.1:6443").unwrap_err().contains("https://"));
        assert!(ServerUrl::parse("https://host:6443/api").is_err());
        assert!(ServerUrl::parse("not a url").is_err());
    }
}
