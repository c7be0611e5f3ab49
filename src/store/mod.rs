//! The store: the only owner of the SQLite file. It keeps every object under a key with MVCC revisions
//! (one global counter; an object's mod revision is its resourceVersion) — values appended to `history`
//! by revision, keys resolved in an in-memory index — applies writes as deterministic
//! commands through one applier that batches concurrent writes into one transaction, makes them durable
//! with one fsync per group in the syncer (overlapping the next batch), fans changes out to watchers, and
//! compacts old history. It knows keys and bytes, not Kubernetes objects.

mod applier;
mod command;
mod compactor;
mod index;
mod read;
mod schema;
mod syncer;
mod watch;

pub use command::{Command, CommandError};
pub use compactor::CompactionPolicy;
pub use read::{ListOptions, ListResult};
pub use watch::{Event, EventKind, WatchError, WatchStream};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// One key's value at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store is shut down")]
    Closed,
    #[error("a read task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("revision {requested} has been compacted (oldest kept: {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: i64, current: i64 },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The current revision: the newest history row, or the floor kept in `counters`, which compaction
/// raises to the current revision so that removing old rows can never lower it. Not writing the counter
/// on every commit saves a page per transaction.
pub(crate) const CURRENT_REVISION_SQL: &str = "SELECT MAX(
    (SELECT value FROM counters WHERE name = 'revision'),
    COALESCE((SELECT MAX(revision) FROM history), 0))";

/// A proposal on its way to the applier, with the channel its outcome goes back on.
struct Proposal {
    command: Command,
    reply: syncer::Reply,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    proposals: mpsc::Sender<Proposal>,
    /// Joined on drop, so that the file is released when the last handle goes (a reopen does not race
    /// the old connection's close).
    applier: Option<std::thread::JoinHandle<()>>,
    readers: read::Readers,
    hub: watch::Hub,
    metrics: applier::Metrics,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Replacing the only sender closes the queue: the applier finishes what it holds and exits.
        drop(std::mem::replace(&mut self.proposals, mpsc::channel(1).0));
        if let Some(applier) = self.applier.take() {
            let _ = applier.join();
        }
    }
}

impl Store {
    /// Opens the store file `path` (creating it), starts the applier thread and returns the handle.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_path_buf(), source })?;
        }
        let conn = schema::open_writer(path)?;
        let counters = read::load_counters(&conn)?;
        let index = index::SharedIndex::new(index::KeyIndex::load(&conn, counters.compacted)?);
        let hub = watch::Hub::new(counters.revision, counters.compacted);
        let metrics = applier::Metrics::default();
        let (proposals, rx) = mpsc::channel(4096);
        let syncer = syncer::spawn(path.to_path_buf(), hub.clone(), metrics.clone())?;
        let state = applier::State { conn, index: index.clone(), revision: counters.revision };
        let applier = Some(applier::spawn(state, rx, syncer, metrics.clone())?);
        let readers = read::Readers::new(path.to_path_buf(), hub.clone(), index);
        Ok(Store { inner: Arc::new(Inner { proposals, applier, readers, hub, metrics }) })
    }

    /// Applies one write command; returns the written record (for a delete: the last value, at the
    /// delete's revision) or why the command was refused. Returns only once the write is durable.
    pub async fn apply(&self, command: Command) -> Result<std::result::Result<Record, CommandError>> {
        let (reply, rx) = oneshot::channel();
        self.inner.proposals.send(Proposal { command, reply }).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Reads one key at the current revision.
    pub async fn get(&self, key: &str) -> Result<Option<Record>> {
        self.inner.readers.get(key.to_string()).await
    }

    /// Lists the keys under `prefix` (see [`ListOptions`]).
    pub async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        self.inner.readers.list(prefix.to_string(), options).await
    }

    /// Watches the keys under `prefix`, starting after `after_revision` (events with greater revisions).
    pub async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        self.inner.readers.watch(prefix.to_string(), after_revision).await
    }

    /// The newest revision applied.
    pub fn current_revision(&self) -> i64 {
        self.inner.hub.current_revision()
    }

    /// The oldest revision still readable (history at or below it has been compacted).
    pub fn compacted_revision(&self) -> i64 {
        self.inner.hub.compacted_revision()
    }

    /// The number of open watches.
    pub fn watch_count(&self) -> usize {
        self.inner.hub.watcher_count()
    }

    /// Write-path counters for /metrics.
    pub fn metrics(&self) -> applier::MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Runs compaction by `policy` until the store is dropped.
    pub fn spawn_compactor(&self, policy: CompactionPolicy) -> tokio::task::JoinHandle<()> {
        compactor::spawn(self.clone(), policy)
    }
}

pub use applier::MetricsSnapshot;

#[cfg(test)]
mod tests;
