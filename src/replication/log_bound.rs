//! The Raft log's disk use bounded in bytes as well as in entries: openraft snapshots every
//! `--raft-snapshot-entries` entries, but entries carry batches of up to 1 MiB, so a count alone lets
//! the log grow to gigabytes. Every few seconds this takes a snapshot once the entries not in one
//! exceed `--raft-snapshot-bytes`, and purges the entries a snapshot covers once those kept for
//! followers slightly behind exceed it too (a follower farther behind gets the snapshot), so the log
//! stays within about twice the bound plus what is written between two checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::log_store::LogStore;
use super::types::Raft;

/// How often the log's size is checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps the log of `raft`, stored in `log`, within `max_bytes` as described above, until the node
/// stops; returns the log's size in bytes as last measured.
pub fn keep_log_within(raft: Raft, log: LogStore, max_bytes: u64) -> Arc<AtomicU64> {
    let measured = Arc::new(AtomicU64::new(0));
    let size = measured.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (stopped, snapshot_index) = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow();
                (metrics.running_state.is_err(), metrics.snapshot.map(|id| id.index))
            };
            if stopped {
                return;
            }
            let (covered, uncovered) = match log.bytes_split_at(snapshot_index).await {
                Ok(split) => split,
                Err(error) => {
                    tracing::warn!(%error, "cannot measure the Raft log");
                    continue;
                }
            };
            size.store(covered + uncovered, Ordering::Relaxed);
            let done = if uncovered > max_bytes {
                tracing::info!(bytes = uncovered, "the Raft log outgrew --raft-snapshot-bytes: taking a snapshot");
                raft.trigger().snapshot().await
            } else if let Some(index) = snapshot_index.filter(|_| covered > max_bytes) {
                raft.trigger().purge_log(index).await
            } else {
                Ok(())
            };
            if done.is_err() {
                return;
            }
        }
    });
    measured
}
