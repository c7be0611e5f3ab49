//! The Raft log's disk use bounded in bytes as well as in entries: openraft snapshots every
//! `--raft-snapshot-entries` entries, but entries carry batches of up to 1 MiB, so a count alone lets
//! the log grow to gigabytes. Every few seconds this takes a snapshot once the applied entries not in
//! one exceed `--raft-snapshot-bytes`, and once the entries a snapshot covers exceed it too, purges
//! the oldest of them, keeping half the bound for followers slightly behind (a follower farther
//! behind gets the snapshot). The log so stays within about twice the bound, plus entries not yet
//! applied and what is written between two checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::log_store::LogStore;
use super::types::{Raft, StorageError};

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
            match check(&raft, &log, max_bytes, &size).await {
                Ok(Checked::Running) => {}
                Ok(Checked::Stopped) => return,
                Err(error) => tracing::warn!(%error, "cannot keep the Raft log within --raft-snapshot-bytes"),
            }
        }
    });
    measured
}

enum Checked {
    Running,
    Stopped,
}

/// One check: measures the log into `size`, then snapshots or purges if it is over the bound.
async fn check(raft: &Raft, log: &LogStore, max_bytes: u64, size: &AtomicU64) -> Result<Checked, StorageError> {
    let (stopped, snapshot, applied) = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        (metrics.running_state.is_err(), metrics.snapshot.map(|id| id.index), metrics.last_applied.map(|id| id.index))
    };
    if stopped {
        return Ok(Checked::Stopped);
    }
    let [covered, applied_since, not_applied] = log.bytes_by_range(snapshot, applied).await?;
    size.store(covered + applied_since + not_applied, Ordering::Relaxed);
    let triggered = if applied_since > max_bytes {
        tracing::info!(bytes = applied_since, "the Raft log outgrew --raft-snapshot-bytes: taking a snapshot");
        raft.trigger().snapshot().await
    } else if let Some(snapshot) = snapshot.filter(|_| covered > max_bytes) {
        match log.purge_point(snapshot, max_bytes / 2).await? {
            Some(upto) => raft.trigger().purge_log(upto).await,
            None => Ok(()),
        }
    } else {
        Ok(())
    };
    Ok(if triggered.is_ok() { Checked::Running } else { Checked::Stopped })
}
