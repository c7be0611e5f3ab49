//! `tug token` flags: bootstrap tokens for joining agents (create, list, delete) and the rotation of the
//! server token, as k3s's `token`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::join::bootstrap::BootstrapToken;

/// Flags of `tug token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,

    /// The admin kubeconfig to reach the cluster with [default: the one `tug server` writes,
    /// /etc/tug/tug.yaml, or $HOME/.kube/tug.yaml when not root]
    #[arg(long, env = "TUG_KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
}

/// What `tug token` does.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Create a bootstrap token that agents can join with until it expires; prints the full token
    Create {
        /// How long the token is valid (e.g. 2h, 7d); 0 for ever
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// A note shown by `tug token list`
        #[arg(long, default_value = "")]
        description: String,
        /// The token to create, <id>.<secret> (6 and 16 characters of [a-z0-9]) [default: random]
        #[arg(value_parser = parse_token)]
        token: Option<BootstrapToken>,
    },
    /// List the bootstrap tokens: id, time left, expiry, usages, description
    #[command(alias = "ls")]
    List,
    /// Delete bootstrap tokens by id (or whole token); agents that joined with them keep running
    #[command(alias = "rm")]
    Delete {
        /// Token ids (the part before the dot) or whole tokens
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Replace the server token (the one servers and agents join with) on every server; nodes already
    /// joined keep running, and need the new token (TUG_TOKEN) to join again
    Rotate {
        /// The new token's secret [default: random]
        #[arg(long, value_parser = parse_secret)]
        new_token: Option<String>,
    },
}

fn parse_token(text: &str) -> Result<BootstrapToken, String> {
    BootstrapToken::parse(text).ok_or_else(|| "not <id>.<secret> (6 and 16 characters of [a-z0-9])".to_string())
}

fn parse_secret(text: &str) -> Result<String, String> {
    match text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == ':') {
        true => Err("must be non-empty, without spaces or ':'".to_string()),
        false => Ok(text.to_string()),
    }
}
