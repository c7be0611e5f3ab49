//! `tug agent` flags.

use std::path::PathBuf;

use clap::Args;

/// Flags of `tug agent`; every flag can also be set in the config file under the same name.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Config file with the same keys as the flags (YAML)
    #[arg(long, short = 'c', env = "TUG_CONFIG_FILE", default_value = "/etc/tug/config.yaml", help_heading = "Config")]
    pub config: PathBuf,

    /// Turn on debug logs
    #[arg(long, env = "TUG_DEBUG", help_heading = "Logging")]
    pub debug: bool,

    /// Server to connect to, https://HOST:PORT
    #[arg(long, short = 's', env = "TUG_URL", help_heading = "Cluster")]
    pub server: Option<String>,

    /// Token to join with (the contents of the server's <data-dir>/server/token)
    #[arg(long, short = 't', env = "TUG_TOKEN", hide_env_values = true, help_heading = "Cluster")]
    pub token: Option<String>,

    /// File holding the token to join with
    #[arg(long, env = "TUG_TOKEN_FILE", help_heading = "Cluster")]
    pub token_file: Option<PathBuf>,

    /// Folder to hold state [default: /var/lib/tug, or $HOME/.tug when not root]
    #[arg(long, short = 'd', env = "TUG_DATA_DIR", help_heading = "Data")]
    pub data_dir: Option<PathBuf>,

    /// Local port of the load balancer in front of the API servers (127.0.0.1)
    #[arg(long, env = "TUG_LB_SERVER_PORT", default_value_t = 6444, help_heading = "Agent/Networking")]
    pub lb_server_port: u16,

    /// Append a random id, kept in <data-dir>/agent/node-id, to the node name (for machines sharing a host name)
    #[arg(long, env = "TUG_WITH_NODE_ID", help_heading = "Agent/Node")]
    pub with_node_id: bool,

    /// How often the kubelet's certificates are checked while the agent runs; those within 120 days of
    /// expiry are renewed and put in use at once
    #[arg(long, env = "TUG_CERTIFICATE_CHECK_INTERVAL", default_value = "12h", value_parser = humantime::parse_duration, help_heading = "Agent/Node")]
    pub certificate_check_interval: std::time::Duration,

    #[command(flatten)]
    pub node: super::NodeArgs,
}
