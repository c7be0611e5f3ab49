//! The single applier: one thread owning the write connection. It takes every proposal waiting in the
//! queue, applies them in order inside one transaction and commits, then hands the transaction to the
//! syncer, which makes it durable and only then answers. This is the group commit; the applier goes on
//! with the next transaction while the syncer's fsync runs, and commits it when the syncer is free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::command::{self, Change};
use super::index::SharedIndex;
use super::syncer::{Committed, Outcome, Reply, SyncerLink};
use super::watch::Hub;
use super::{restore, Proposal, Record, Result, StoreError, Work};

/// The most proposals one transaction takes.
const MAX_BATCH: usize = 512;

/// Counters of the write path, shared with /metrics.
#[derive(Clone, Default)]
pub struct Metrics(Arc<MetricsInner>);

#[derive(Default)]
struct MetricsInner {
    batches: AtomicU64,
    commands: AtomicU64,
    commit_micros_total: AtomicU64,
    commit_micros_max: AtomicU64,
    syncs: AtomicU64,
    sync_micros_total: AtomicU64,
}

/// A copy of the write-path counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsSnapshot {
    /// Transactions committed.
    pub batches: u64,
    /// Commands applied.
    pub commands: u64,
    /// Sum of the transactions' apply-and-commit times, in seconds.
    pub commit_seconds_total: f64,
    /// Slowest transaction seen, in seconds.
    pub commit_seconds_max: f64,
    /// WAL fsyncs (each makes one or more transactions durable).
    pub syncs: u64,
    /// Sum of fsync latencies, in seconds.
    pub sync_seconds_total: f64,
}

impl Metrics {
    fn record(&self, commands: usize, commit: std::time::Duration) {
        let micros = commit.as_micros() as u64;
        self.0.batches.fetch_add(1, Ordering::Relaxed);
        self.0.commands.fetch_add(commands as u64, Ordering::Relaxed);
        self.0.commit_micros_total.fetch_add(micros, Ordering::Relaxed);
        self.0.commit_micros_max.fetch_max(micros, Ordering::Relaxed);
    }

    pub(super) fn record_sync(&self, took: std::time::Duration) {
        self.0.syncs.fetch_add(1, Ordering::Relaxed);
        self.0.sync_micros_total.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            batches: self.0.batches.load(Ordering::Relaxed),
            commands: self.0.commands.load(Ordering::Relaxed),
            commit_seconds_total: self.0.commit_micros_total.load(Ordering::Relaxed) as f64 / 1e6,
            commit_seconds_max: self.0.commit_micros_max.load(Ordering::Relaxed) as f64 / 1e6,
            syncs: self.0.syncs.load(Ordering::Relaxed),
            sync_seconds_total: self.0.sync_micros_total.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// What the applier keeps between transactions.
pub(super) struct State {
    pub conn: Connection,
    pub index: SharedIndex,
    /// The last revision committed.
    pub revision: i64,
    /// Where a restore announces the replaced contents.
    pub hub: Hub,
}

/// Starts the applier thread, which hands each committed transaction to `syncer`.
pub(super) fn spawn(
    state: State,
    rx: mpsc::Receiver<Work>,
    syncer: SyncerLink,
    metrics: Metrics,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tug-store-applier".into())
        .spawn(move || run(state, rx, syncer, metrics))
        .map_err(|e| StoreError::DataDir { path: "applier thread".into(), source: e })
}

/// How long the applier waits for the syncer before looking at the queue again.
const WAIT_FOR_SYNCER: Duration = Duration::from_micros(100);

fn run(mut state: State, mut rx: mpsc::Receiver<Work>, syncer: SyncerLink, metrics: Metrics) {
    syncer.register_applier();
    let mut deferred = None;
    while let Some(work) = deferred.take().or_else(|| rx.blocking_recv()) {
        let first = match work {
            Work::Propose(first) => first,
            Work::Restore { from, reply } => {
                let _ = reply.send(restore::run(&mut state, &from, &syncer));
                continue;
            }
        };
        let started = Instant::now();
        let mut replies = Vec::new();
        let committed = state.revision;
        let result = transaction(&mut state, first, &mut rx, &syncer, &mut replies, &mut deferred);
        match result {
            Ok(Applied { outcomes, changes, compacted_to }) => {
                metrics.record(outcomes.iter().map(Vec::len).sum(), started.elapsed());
                let answers = replies.into_iter().zip(outcomes).collect();
                let (revision, compacted) = (state.revision, state.index.read().compacted());
                if !syncer.send(Committed { answers, changes, revision, compacted }) {
                    break;
                }
                if compacted_to.is_some() {
                    reclaim_space(&state.conn);
                }
            }
            Err(e) => {
                state.index.write().truncate_after(committed);
                tracing::error!(error = %e, "store transaction failed; the batch is rejected");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Sqlite(clone_error(&e))));
                }
            }
        }
    }
    tracing::debug!("store applier stopped");
}

/// What one transaction did, in proposal order.
struct Applied {
    /// Each proposal's outcomes, one per command.
    outcomes: Vec<Vec<Outcome>>,
    changes: Vec<Change>,
    /// The revision a compaction in it compacted to.
    compacted_to: Option<i64>,
}

/// Applies `first` and what else is queued in one transaction, and keeps taking proposals while the
/// syncer is busy (they could not be durable sooner anyway), up to MAX_BATCH; then commits and advances
/// `state`. Each proposal's reply goes to `replies`, also on failure, when nothing of the transaction
/// remains in SQLite (the caller drops it from the index). A restore met in the queue ends the batch and
/// is left in `deferred`.
fn transaction(
    state: &mut State,
    first: Proposal,
    rx: &mut mpsc::Receiver<Work>,
    syncer: &SyncerLink,
    replies: &mut Vec<Reply>,
    deferred: &mut Option<Work>,
) -> rusqlite::Result<Applied> {
    let tx = state.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut revision = state.revision;
    let mut applied = Applied { outcomes: Vec::new(), changes: Vec::new(), compacted_to: None };
    let mut replicated_state = None;
    let mut next = Some(first);
    loop {
        while let Some(proposal) = next.take().or_else(|| next_proposal(rx, replies.len(), deferred)) {
            replies.push(proposal.reply);
            replicated_state = proposal.applied.or(replicated_state);
            let mut outcomes = Vec::with_capacity(proposal.commands.len());
            for command in proposal.commands {
                outcomes.push(apply_one(&tx, &state.index, command, &mut revision, &mut applied)?);
            }
            applied.outcomes.push(outcomes);
        }
        if replies.len() >= MAX_BATCH || deferred.is_some() || !syncer.busy() {
            break;
        }
        // Woken early when the syncer finishes.
        std::thread::park_timeout(WAIT_FOR_SYNCER);
    }
    if let Some(state) = replicated_state {
        command::record_replicated_state(&tx, &state)?;
    }
    tx.commit()?;
    state.revision = revision;
    if let Some(target) = applied.compacted_to {
        state.index.write().compact(target);
    }
    Ok(applied)
}

/// Applies `command` at the revision after `revision`, advancing it if the command wrote, and records
/// its change or compaction in `applied`; returns its outcome.
fn apply_one(
    tx: &rusqlite::Transaction<'_>,
    index: &SharedIndex,
    command: command::Command,
    revision: &mut i64,
    applied: &mut Applied,
) -> rusqlite::Result<Outcome> {
    let compaction = match command {
        command::Command::Compact { revision } => Some(revision),
        _ => None,
    };
    Ok(match command::apply(tx, index, command, *revision + 1)? {
        Ok(Some(change)) => {
            *revision += 1;
            let record = change.record.clone();
            applied.changes.push(change);
            Ok(record)
        }
        // Compaction writes no key; its outcome carries the revision it ran at.
        Ok(None) => {
            applied.compacted_to = compaction;
            Ok(marker_record(*revision))
        }
        Err(refused) => Err(refused),
    })
}

/// The next queued proposal for the current batch, if the batch has room; a restore is set aside.
fn next_proposal(rx: &mut mpsc::Receiver<Work>, taken: usize, deferred: &mut Option<Work>) -> Option<Proposal> {
    if taken >= MAX_BATCH || deferred.is_some() {
        return None;
    }
    match rx.try_recv().ok()? {
        Work::Propose(proposal) => Some(proposal),
        restore @ Work::Restore { .. } => {
            *deferred = Some(restore);
            None
        }
    }
}

/// The outcome of a command that wrote no key: the revision it ran at.
fn marker_record(revision: i64) -> Record {
    Record { key: String::new(), value: Default::default(), create_revision: 0, mod_revision: revision }
}

/// After a compaction: folds the WAL back into the file and returns freed pages to the file system, so
/// the disk footprint follows the retained data rather than its high-water mark.
fn reclaim_space(conn: &Connection) {
    let result = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .and_then(|()| conn.execute_batch("PRAGMA incremental_vacuum;"));
    if let Err(e) = result {
        tracing::warn!(error = %e, "reclaiming store space after compaction failed");
    }
}

/// rusqlite errors are not Clone; every proposer of a failed batch gets an equivalent error.
fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => rusqlite::Error::SqliteFailure(*code, msg.clone()),
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}
