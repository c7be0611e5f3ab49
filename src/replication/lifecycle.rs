//! Ending the process when this server can no longer take part in its group: its Raft node stopped on
//! a storage error, or it was removed from the group (its Node deleted) — as the leader tells it right
//! after the change, or as it sees in the membership it knows (openraft stops replicating to a removed
//! member as soon as the change is appended, so that view may never come). A removed server leaves a
//! marker in its store directory and refuses to start again until that directory is cleared for a new
//! join, as a k3s server removed from etcd does. A server removed while it was down hears from no
//! leader when it is back, and asks the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use openraft::ServerState;

use super::types::{NodeId, Raft};
use super::Replication;

/// How long a member may be missing from the committed membership it knows before it counts as removed.
const REMOVED_AFTER: Duration = Duration::from_secs(5);
/// How often a server hearing from no leader asks the others whether it was removed.
const REMOVAL_CHECK_EVERY: Duration = Duration::from_secs(2);
/// The marker a removed server leaves in its store directory.
pub const REMOVED_MARKER: &str = "removed";

/// Refuses to start a server that was removed from its group.
pub fn refuse_if_removed(dir: &Path) -> anyhow::Result<()> {
    let marker = dir.join(REMOVED_MARKER);
    if marker.exists() {
        anyhow::bail!("{}", removed_message(dir));
    }
    Ok(())
}

fn removed_message(dir: &Path) -> String {
    format!(
        "this server was removed from the cluster (its Node was deleted); to add it again, remove {} and \
         start it with --server and --token (or start it with --cluster-reset as a new cluster)",
        dir.display()
    )
}

/// Exits the process if the Raft node stops on an error (a storage failure): what reached the disk is
/// unknown, and a restart recovers from the log, as the store does when an fsync fails.
pub fn exit_when_stopped(raft: &Raft) {
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        while metrics.changed().await.is_ok() {
            match &metrics.borrow().running_state {
                Ok(()) => {}
                // Shut down on purpose.
                Err(openraft::error::Fatal::Stopped) => return,
                Err(error) => {
                    tracing::error!(%error, "the Raft node stopped on an error; exiting");
                    std::process::exit(1);
                }
            }
        }
    });
}

/// Exits the process, leaving the marker in `dir`, once member `id` has been missing from the
/// membership for [`REMOVED_AFTER`] after being in it.
pub fn exit_when_removed(raft: &Raft, id: NodeId, dir: PathBuf) {
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        let mut was_member = false;
        let mut missing_since: Option<Instant> = None;
        loop {
            let (member, committed) = {
                let metrics = metrics.borrow();
                let member = metrics.membership_config.membership().get_node(&id).is_some();
                (member, super::membership::committed_membership(&metrics).is_some())
            };
            if member {
                was_member = true;
                missing_since = None;
            } else if !committed {
                missing_since = None;
            } else if was_member && missing_since.get_or_insert_with(Instant::now).elapsed() >= REMOVED_AFTER {
                exit_removed(&dir);
            }
            // Woken by a change, or after a second to see how long it has been missing.
            if let Ok(Err(_closed)) = tokio::time::timeout(Duration::from_secs(1), metrics.changed()).await {
                return;
            }
        }
    });
}

/// Exits the process as removed if, while this server hears from no leader (it stands for election or
/// knows none), another member says it was removed from the group: removed while it was down, it
/// was never told, and the leader it remembers no longer sends it anything. Asks every few seconds
/// until the node stops.
pub fn exit_when_removed_while_down(replication: Arc<Replication>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REMOVAL_CHECK_EVERY).await;
            let (stopped, unled) = {
                let metrics = replication.raft.metrics();
                let metrics = metrics.borrow();
                let unled = metrics.state == ServerState::Candidate || metrics.current_leader.is_none();
                (metrics.running_state.is_err(), unled)
            };
            if stopped {
                return;
            }
            if unled && replication.removed_while_down().await {
                exit_removed(&replication.store_dir);
            }
        }
    });
}

/// Leaves the marker in `dir` and exits the process.
pub fn exit_removed(dir: &Path) -> ! {
    if let Err(error) = leave_marker(dir) {
        tracing::error!(error = %format!("{error:#}"), "cannot mark this server as removed");
    }
    tracing::error!("{}; exiting", removed_message(dir));
    std::process::exit(1);
}

fn leave_marker(dir: &Path) -> anyhow::Result<()> {
    let marker = dir.join(REMOVED_MARKER);
    crate::fsutil::write_atomic(&marker, b"removed from the cluster\n", 0o600)
        .with_context(|| format!("cannot write {}", marker.display()))
}
