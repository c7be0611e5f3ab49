//! `tug check-config` flags: where tug would keep its data and serve.

use std::path::PathBuf;

use clap::Args;

/// Flags of `tug check-config`.
#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// Folder tug would keep its state in, whose disk is timed [default: /var/lib/tug, or $HOME/.tug
    /// when not root]
    #[arg(long, short = 'd', env = "TUG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// The API server's port, checked free
    #[arg(long, env = "TUG_HTTPS_LISTEN_PORT", default_value_t = 6443)]
    pub https_listen_port: u16,
}
