//! The server's end of joining: `GET /cacerts` for anyone; `POST /v1-tug/node-credentials`, which signs a
//! kubelet's client and serving certificates for holders of the join token or of a bootstrap token
//! (`super::bootstrap`), and for a kubelet renewing its own with its current client certificate; and
//! `POST /v1-tug/server-bootstrap`, which hands a joining server the cluster's CA and service account
//! key. Both answer 503 until the server has read the cluster's (possibly rotated) token
//! (`super::rotation`).
//!
//! The node password rule: the first join of a node name stores a hash of its node password in the
//! Secret `<name>.node-password.tug` in kube-system. A later join of that name with another password is
//! refused while the Node is alive (Ready), so a second machine with the same host name cannot take over
//! a running node; once the Node is not Ready (its previous incarnation is gone, e.g. the device was
//! reinstalled) or deleted, the new password replaces the old one and the join goes through (with a
//! token only: a node renewing with its certificate must bring the password it joined with).

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    Credentials, CredentialsRequest, ServerBootstrap, Token, CACERTS_PATH, NODE_CREDENTIALS_PATH, SERVER_BOOTSTRAP_PATH,
};
use crate::apiserver::auth::User;
use crate::apiserver::status::{ApiError, FieldError};
use crate::pki::{self, Authority};

/// The server's join token: the secret of `--token` (which, given in full, must be for this CA), else the
/// one of the token file written before, else a new random one; written in full to `<server_dir>/token`
/// (0600) for operators to hand to joining nodes.
pub fn ensure_server_token(server_dir: &Path, ca_pem: &str, configured: Option<&Token>) -> anyhow::Result<Token> {
    let path = server_dir.join("token");
    let own_hash = super::token::ca_hash(ca_pem.as_bytes());
    let secret = match configured {
        Some(token) if token.ca_hash.as_ref().is_some_and(|hash| *hash != own_hash) => {
            anyhow::bail!(
                "--token carries the hash of another CA than this server's ({own_hash}): it is another cluster's token"
            )
        }
        Some(token) => token.secret.clone(),
        None => match Token::read(&path) {
            Ok(token) => token.secret,
            Err(_) if !path.exists() => super::token::random_secret(),
            Err(e) => anyhow::bail!("{e}"),
        },
    };
    let token = Token::for_ca(ca_pem, &secret);
    super::rotation::write_token_file(server_dir, &token)?;
    Ok(token)
}

/// Largest credentials request accepted.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
const PASSWORD_NAMESPACE: &str = "kube-system";

/// What the join endpoints need.
pub struct JoinService {
    pub authority: Authority,
    /// The server token, as rotations leave it.
    pub token: Arc<super::rotation::ServerToken>,
    /// Handed to every joining node.
    pub network: crate::network::ClusterNetwork,
    /// A privileged API client (the node password Secrets, the Nodes).
    pub client: kube::Client,
    /// Where the cluster's shared files are (handed to joining servers).
    pub tls_dir: std::path::PathBuf,
}

/// The join endpoints, to be merged in front of the API router.
pub fn routes(service: Arc<JoinService>) -> axum::Router {
    axum::Router::new()
        .route(CACERTS_PATH, axum::routing::get(cacerts))
        .route(NODE_CREDENTIALS_PATH, axum::routing::post(node_credentials))
        .route(SERVER_BOOTSTRAP_PATH, axum::routing::post(server_bootstrap))
        .with_state(service)
}

async fn cacerts(State(service): State<Arc<JoinService>>) -> Response {
    ([(http::header::CONTENT_TYPE, "text/plain")], service.authority.cert_pem().to_string()).into_response()
}

async fn node_credentials(State(service): State<Arc<JoinService>>, request: axum::extract::Request) -> Response {
    match issue(&service, request).await {
        Ok(credentials) => match serde_json::to_vec(&credentials) {
            Ok(body) => ([(http::header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        },
        Err(error) => error.into_response(),
    }
}

/// The shared files for a joining server holding the token.
async fn server_bootstrap(State(service): State<Arc<JoinService>>, request: axum::extract::Request) -> Response {
    let Some(token) = service.token.current() else { return starting().into_response() };
    if !authorized(&token, request.headers()) {
        return ApiError::new(401, "Unauthorized", "the token is not valid for this cluster").into_response();
    }
    let mut files = std::collections::BTreeMap::new();
    for name in pki::shared_files() {
        match std::fs::read_to_string(service.tls_dir.join(&name)) {
            Ok(pem) => files.insert(name, pem),
            Err(e) => return ApiError::internal(format!("cannot read {name}: {e}")).into_response(),
        };
    }
    tracing::info!("handed the cluster's shared files to a joining server");
    match serde_json::to_vec(&ServerBootstrap { files }) {
        Ok(body) => ([(http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn issue(service: &JoinService, request: axum::extract::Request) -> Result<Credentials, ApiError> {
    let user = request.extensions().get::<User>().cloned();
    let Some(caller) = authorized_node(service, request.headers(), user.as_ref()).await? else {
        return Err(ApiError::new(401, "Unauthorized", "the join token is not valid for this server"));
    };
    let body = axum::body::to_bytes(request.into_body(), MAX_REQUEST_BYTES)
        .await
        .map_err(|_| ApiError::too_large(format!("the request body is larger than {MAX_REQUEST_BYTES} bytes")))?;
    let request: CredentialsRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the credentials request is not valid JSON: {e}")))?;
    validate(&request)?;
    if let Caller::Node(node) = &caller {
        if *node != request.node_name {
            return Err(ApiError::forbidden(format!(
                "node {node:?} may renew only its own credentials, not those of {:?}",
                request.node_name
            )));
        }
    }
    let may_claim = matches!(caller, Caller::TokenHolder);
    check_node_password(&service.client, &request.node_name, &request.node_password, may_claim).await?;
    let sign = |field: &str, spec: &pki::LeafSpec, csr: &str| {
        service.authority.sign_request(spec, csr).map_err(|e| invalid(field, csr, e))
    };
    let client_cert = sign("clientCsr", &pki::kubelet_client_spec(&request.node_name), &request.client_csr)?;
    let serving_spec = pki::kubelet_serving_spec(&request.node_name, &request.addresses);
    let serving_cert = sign("servingCsr", &serving_spec, &request.serving_csr)?;
    tracing::info!(node = %request.node_name, addresses = ?request.addresses, "issued node credentials");
    Ok(Credentials {
        client_cert,
        serving_cert,
        ca_cert: service.authority.cert_pem().to_string(),
        network: service.network.clone(),
    })
}

fn invalid(field: &str, value: &str, detail: impl std::fmt::Display) -> ApiError {
    let error = FieldError::invalid(field, &serde_json::Value::String(value.chars().take(64).collect()), detail);
    ApiError::new(422, "Invalid", format!("the credentials request is invalid: {}: {}", error.field, error.message))
}

fn validate(request: &CredentialsRequest) -> Result<(), ApiError> {
    if let Some(problem) = crate::core::validation::is_dns1123_subdomain(&request.node_name).into_iter().next() {
        return Err(invalid("nodeName", &request.node_name, problem));
    }
    if request.node_password.is_empty() || request.node_password.len() > 256 {
        return Err(invalid("nodePassword", "", "must be 1 to 256 characters"));
    }
    Ok(())
}

/// The answer to joins before the server knows the cluster's token (a rotation may have replaced its own).
fn starting() -> ApiError {
    ApiError::new(503, "ServiceUnavailable", "the server is starting; try again")
}

/// The request's basic credentials, user `server` or `node`: the secret.
fn basic_secret(headers: &http::HeaderMap) -> Option<String> {
    let encoded = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    matches!(user, "server" | "node").then(|| secret.to_string())
}

/// Whether the request's basic credentials carry the server token's secret.
fn authorized(token: &Token, headers: &http::HeaderMap) -> bool {
    basic_secret(headers).is_some_and(|secret| bool::from(secret.as_bytes().ct_eq(token.secret.as_bytes())))
}

/// Who may be issued node credentials.
enum Caller {
    /// A holder of the server token or of a valid bootstrap token: any node name.
    TokenHolder,
    /// A kubelet renewing its certificates with its current client certificate: its own name only.
    Node(String),
}

/// Whether the request carries the server token, a valid bootstrap token or a node's client
/// certificate (checked in that order), and whose it is.
async fn authorized_node(
    service: &JoinService,
    headers: &http::HeaderMap,
    user: Option<&User>,
) -> Result<Option<Caller>, ApiError> {
    let token = service.token.current().ok_or_else(starting)?;
    if authorized(&token, headers) {
        return Ok(Some(Caller::TokenHolder));
    }
    if let Some(token) = basic_secret(headers).as_deref().and_then(super::bootstrap::BootstrapToken::parse) {
        let valid = super::bootstrap::is_valid(&service.client, &token)
            .await
            .map_err(|e| ApiError::internal(format!("checking the bootstrap token: {e}")))?;
        if valid {
            return Ok(Some(Caller::TokenHolder));
        }
    }
    Ok(user.and_then(node_of).map(Caller::Node))
}

/// The node a kubelet client certificate's user is (`system:node:<name>` of group `system:nodes`).
fn node_of(user: &User) -> Option<String> {
    let name = user.name.strip_prefix("system:node:")?;
    (user.is_in("system:nodes") && !name.is_empty()).then(|| name.to_string())
}

fn password_hash(password: &str) -> ByteString {
    ByteString(format!("{:x}", Sha256::digest(password.as_bytes())).into_bytes())
}

/// Applies the node password rule of the module doc; without `may_claim` (a node renewing with its
/// certificate alone) the stored password must match, never be created or replaced.
async fn check_node_password(
    client: &kube::Client,
    node: &str,
    password: &str,
    may_claim: bool,
) -> Result<(), ApiError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), PASSWORD_NAMESPACE);
    let name = format!("{node}.node-password.tug");
    let internal = |e: kube::Error| ApiError::internal(format!("checking the node password: {e}"));
    let hash = password_hash(password);
    let stored = secrets.get_opt(&name).await.map_err(internal)?;
    let stored_hash = stored.as_ref().and_then(|s| s.data.as_ref()?.get("hash").cloned());
    if stored_hash.as_ref() == Some(&hash) {
        return Ok(());
    }
    if !may_claim {
        return Err(ApiError::forbidden(format!(
            "node password rejected: a certificate renews {node:?}'s credentials only with the password it joined with"
        )));
    }
    if node_is_alive(client, node).await.map_err(internal)? {
        return Err(ApiError::forbidden(format!(
            "node password rejected: node {node:?} is running with another password (a duplicate host name?); \
             stop it or delete it (kubectl delete node {node}), or join with --with-node-id"
        )));
    }
    let mut secret = stored.unwrap_or_else(|| Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        type_: Some("tug.dev/node-password".into()),
        ..Default::default()
    });
    secret.data = Some([("hash".to_string(), hash)].into());
    let result = match secret.metadata.resource_version {
        Some(_) => {
            tracing::warn!(node, "a node rejoined with a new password; its previous incarnation is gone");
            secrets.replace(&name, &PostParams::default(), &secret).await
        }
        None => secrets.create(&PostParams::default(), &secret).await,
    };
    result.map(|_| ()).map_err(|e| match e {
        kube::Error::Api(status) if status.code == 409 => {
            ApiError::new(409, "Conflict", format!("node {node:?} is joining twice at once; try again"))
        }
        e => internal(e),
    })
}

/// Whether the Node exists and its kubelet reports Ready.
async fn node_is_alive(client: &kube::Client, node: &str) -> kube::Result<bool> {
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(node) = nodes.get_opt(node).await? else { return Ok(false) };
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    Ok(conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> http::HeaderMap {
        let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
        http::HeaderMap::from_iter([(http::header::AUTHORIZATION, value.parse().unwrap())])
    }

    #[test]
    fn the_server_token_is_kept_across_restarts_and_set_by_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_server_token(dir.path(), "ca", None).unwrap();
        assert_eq!(ensure_server_token(dir.path(), "ca", None).unwrap(), first);
        let written = std::fs::read_to_string(dir.path().join("token")).unwrap();
        assert_eq!(Token::parse(&written).unwrap(), first);
        let short = Token::parse("mine").unwrap();
        assert_eq!(ensure_server_token(dir.path(), "ca", Some(&short)).unwrap().secret, "mine");
        let foreign = Token::for_ca("another ca", "mine");
        let refused = ensure_server_token(dir.path(), "ca", Some(&foreign)).unwrap_err().to_string();
        assert!(refused.contains("another CA"), "{refused}");
    }

    #[test]
    fn a_client_certificate_names_a_node_only_as_system_node_of_group_system_nodes() {
        let user = |name: &str, group: &str| User { name: name.into(), groups: vec![group.into()], ..User::default() };
        assert_eq!(node_of(&user("system:node:edge-1", "system:nodes")).as_deref(), Some("edge-1"));
        assert_eq!(node_of(&user("system:node:edge-1", "system:masters")), None);
        assert_eq!(node_of(&user("system:node:", "system:nodes")), None);
        assert_eq!(node_of(&user("system:admin", "system:nodes")), None);
    }

    #[test]
    fn only_the_tokens_secret_authorizes_a_join() {
        let token = Token::for_ca("ca", "s3cret");
        assert!(authorized(&token, &basic("server:s3cret")));
        assert!(authorized(&token, &basic("node:s3cret")));
        assert!(!authorized(&token, &basic("server:s3cre")));
        assert!(!authorized(&token, &basic("admin:s3cret")));
        assert!(!authorized(&token, &http::HeaderMap::new()));
    }
}
