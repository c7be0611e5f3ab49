//! `tug snapshot` flags (k3s's `etcd-snapshot`): save, list, delete and prune store snapshots.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Flags of `tug snapshot`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: SnapshotAction,

    /// Folder holding the server's state [default: /var/lib/tug, or $HOME/.tug when not root]
    #[arg(long, short = 'd', env = "TUG_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Folder of the snapshots [default: <data-dir>/server/db/snapshots]
    #[arg(long, alias = "etcd-snapshot-dir", env = "TUG_SNAPSHOT_DIR", global = true)]
    pub dir: Option<PathBuf>,
}

/// What `tug snapshot` does.
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotAction {
    /// Save a snapshot of the store now (the server may be running)
    Save {
        /// The snapshot's name; the file is <name>-<node>-<unix seconds>
        #[arg(long, default_value = crate::snapshot::ON_DEMAND)]
        name: String,
    },
    /// List the snapshots
    #[command(alias = "list")]
    Ls,
    /// Delete snapshots by file name
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete all but the newest snapshots of a name
    Prune {
        /// The name whose snapshots are pruned
        #[arg(long, default_value = crate::snapshot::ON_DEMAND)]
        name: String,
        /// How many to keep
        #[arg(long, alias = "etcd-snapshot-retention", default_value_t = 5)]
        snapshot_retention: usize,
    },
}
