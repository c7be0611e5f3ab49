//! Joining a node to the cluster, both ends. The server publishes its CA at [`CACERTS_PATH`] (public,
//! as k3s's `/cacerts`) and issues node credentials at [`NODE_CREDENTIALS_PATH`] to holders of the join
//! token (HTTP basic auth, user and secret from the token), and to a running node renewing its own (its
//! kubelet client certificate). A joining agent fetches the CA without
//! trusting it, checks its hash against the token, then asks for its certificates over TLS verified by
//! that CA, sending certificate signing requests so that its private keys never leave the node. The
//! node password (a random secret the agent keeps) binds a node name to one machine while that node is
//! alive; see [`server`] for the rule.

pub mod bootstrap;
pub mod client;
pub mod rotation;
pub mod server;
pub mod token;

use serde::{Deserialize, Serialize};

pub use token::Token;

/// The cluster CA, PEM, for anyone.
pub const CACERTS_PATH: &str = "/cacerts";
/// Node credentials for token holders, and renewals for the node itself.
pub const NODE_CREDENTIALS_PATH: &str = "/v1-tug/node-credentials";

/// The cluster's shared secrets (CA, service account key) for a joining server holding the token.
pub const SERVER_BOOTSTRAP_PATH: &str = "/v1-tug/server-bootstrap";

/// What a joining server receives: file name (in `<data-dir>/server/tls`) to PEM contents.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServerBootstrap {
    pub files: std::collections::BTreeMap<String, String>,
}

/// What a joining node asks for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequest {
    pub node_name: String,
    pub node_password: String,
    /// The addresses the kubelet's serving certificate must cover.
    pub addresses: Vec<std::net::IpAddr>,
    /// PEM certificate signing requests; only their public keys are used.
    pub client_csr: String,
    pub serving_csr: String,
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The kubelet's client certificate (CN `system:node:<name>`, O `system:nodes`).
    pub client_cert: String,
    /// The kubelet's serving certificate for its name and addresses.
    pub serving_cert: String,
    pub ca_cert: String,
    /// The cluster's network settings, which the agent follows.
    pub network: crate::network::ClusterNetwork,
}
