//! `tug agent`'s validated settings: where the server is, the token to join with, the data dir and the
//! node.

use std::path::PathBuf;

use super::{default_data_dir, invalid, parse_token, ConfigError, NodeConfig};
use crate::cli::AgentArgs;
use crate::join::client::ServerUrl;
use crate::join::Token;

/// What `tug agent` runs with.
#[derive(Debug, Clone)]
pub struct AgentRunConfig {
    pub server: ServerUrl,
    pub token: Token,
    pub data_dir: PathBuf,
    pub node: NodeConfig,
    pub with_node_id: bool,
    /// The local port of the load balancer in front of the API servers.
    pub lb_server_port: u16,
    /// How often the kubelet's certificates are checked for renewal while running.
    pub certificate_check_interval: std::time::Duration,
}

impl AgentRunConfig {
    pub fn from_args(args: AgentArgs) -> Result<AgentRunConfig, ConfigError> {
        let url = args.server.ok_or_else(|| invalid("server", "", "required: the https://HOST:PORT of a server"))?;
        let server = ServerUrl::parse(&url).map_err(|reason| invalid("server", &url, reason))?;
        let token = match (args.token, args.token_file) {
            (Some(_), Some(file)) => {
                return Err(invalid("token-file", file.display(), "give either --token or --token-file, not both"))
            }
            (Some(token), None) => parse_token(&token)?,
            (None, Some(file)) => Token::read(&file).map_err(|reason| invalid("token-file", file.display(), reason))?,
            (None, None) => {
                return Err(invalid(
                    "token",
                    "",
                    "required to join (the contents of the server's <data-dir>/server/token)",
                ))
            }
        };
        if args.certificate_check_interval.is_zero() {
            return Err(invalid("certificate-check-interval", "0s", "must be positive"));
        }
        Ok(AgentRunConfig {
            server,
            token,
            data_dir: args.data_dir.unwrap_or_else(default_data_dir),
            node: NodeConfig::from_args(args.node)?,
            with_node_id: args.with_node_id,
            lb_server_port: args.lb_server_port,
            certificate_check_interval: args.certificate_check_interval,
        })
    }
}
