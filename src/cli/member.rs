//! `tug member` flags: list the cluster's servers and remove one (a server without a Node to delete).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Flags of `tug member`.
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub action: MemberAction,

    /// The admin kubeconfig to reach the cluster with [default: the one `tug server` writes,
    /// /etc/tug/tug.yaml, or $HOME/.kube/tug.yaml when not root]
    #[arg(long, env = "TUG_KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
}

/// What `tug member` does.
#[derive(Debug, Clone, Subcommand)]
pub enum MemberAction {
    /// List the servers of the cluster: id, address and role (leader, voter or learner)
    #[command(alias = "list")]
    Ls,
    /// Remove a server from the cluster by id (refused while the servers left could not keep a quorum);
    /// the removed server exits and must have its data dir wiped before it joins again
    #[command(alias = "rm")]
    Remove {
        /// The member's id, as `tug member ls` shows it
        id: u64,
    },
}
