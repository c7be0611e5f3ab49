//! The agent's Kubernetes API client: kube's, over a TLS connector that presents whatever the kubelet's
//! client identity holds at each handshake, so that a certificate renewed while the agent runs is used
//! from the next connection on (kube's own client fixes the certificate it was built with).

use std::sync::Arc;

use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;

use crate::join::client::ServerUrl;
use crate::pki::LiveIdentity;

/// Retries of a call answered 429, 503 or 504: waits from the first to the longest, doubling.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(50);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);
const RETRIES: u32 = 8;

/// A client of the API at `server`, trusting the CA of `ca_pem`, authenticated as `identity` holds.
pub fn client(server: &ServerUrl, ca_pem: &str, identity: Arc<LiveIdentity>) -> anyhow::Result<kube::Client> {
    let config = kube::Config::new(server.to_string().parse()?);
    let tls = crate::apiserver::serve::client_tls_config_with(ca_pem, identity)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    // 429, 503 (no leader yet) and 504 retried with backoff, Retry-After honoured, as kube's own client
    // does, but for seconds rather than minutes: the kubelet's heartbeats must not stall behind one call.
    let retry = kube::client::retry::RetryPolicy::new(RETRY_FIRST, RETRY_MAX, RETRIES, true)?;
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(tower::retry::RetryLayer::new(retry))
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace).build())
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use axum::Extension;

    use super::*;
    use crate::apiserver::auth::User;
    use crate::pki::{Authority, LeafSpec};

    fn spec(common_name: &str, server: bool) -> LeafSpec {
        LeafSpec {
            common_name: common_name.into(),
            organizations: vec![],
            dns_sans: vec![],
            ip_sans: if server { vec![std::net::Ipv4Addr::LOCALHOST.into()] } else { vec![] },
            server,
        }
    }

    #[tokio::test]
    async fn a_replaced_client_certificate_is_presented_from_the_next_connection_on() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(dir.path(), "ca", "test-ca").unwrap();
        let serving = ca.issue(&spec("server", true)).unwrap();
        let first = ca.issue(&spec("system:node:first", false)).unwrap();
        let second = ca.issue(&spec("system:node:second", false)).unwrap();
        // Answers who presented which certificate, closing each connection so that the next makes a new one.
        let app = axum::Router::new().route(
            "/whoami",
            get(|Extension(user): Extension<User>| async move { ([(http::header::CONNECTION, "close")], user.name) }),
        );
        let serving = LiveIdentity::from_pem(&serving.cert_pem, &serving.key_pem).unwrap();
        let tls = crate::apiserver::serve::tls_config_with(ca.cert_pem(), serving).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = ServerUrl { host: "127.0.0.1".into(), port: listener.local_addr().unwrap().port() };
        tokio::spawn(crate::apiserver::serve::serve(listener, tls, app, std::future::pending()));

        let identity = LiveIdentity::from_pem(&first.cert_pem, &first.key_pem).unwrap();
        let client = client(&server, ca.cert_pem(), identity.clone()).unwrap();
        let whoami = || client.request_text(http::Request::get("/whoami").body(Vec::new()).unwrap());
        assert_eq!(whoami().await.unwrap(), "system:node:first");
        identity.replace(&second.cert_pem, &second.key_pem).unwrap();
        assert_eq!(whoami().await.unwrap(), "system:node:second");
    }
}
