//! `tug agent` flags.

use std::path::PathBuf;

use clap::Args;

/// Flags of `tug agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Config file with the same keys as the flags (YAML)
    #[arg(long, short = 'c', env = "TUG_CONFIG_FILE", default_value = "/etc/tug/config.yaml", help_heading = "Config")]
    pub config: PathBuf,

    /// Server to connect to
    #[arg(long, short = 's', env = "TUG_URL", help_heading = "Cluster")]
    pub server: Option<String>,

    /// Token to use for authentication
    #[arg(long, short = 't', env = "TUG_TOKEN", hide_env_values = true, help_heading = "Cluster")]
    pub token: Option<String>,

    /// Folder to hold state
    #[arg(long, short = 'd', env = "TUG_DATA_DIR", help_heading = "Data")]
    pub data_dir: Option<PathBuf>,
}
