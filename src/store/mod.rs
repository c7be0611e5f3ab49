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
mod restore;
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
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
    #[error("the store's replication is unavailable: {0}")]
    Unavailable(String),
    /// A write was sent to the leader but no answer came: it may or may not take effect.
    #[error("the write's outcome is unknown: {0}")]
    Indeterminate(String),
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

/// A write on its way to the applier: its commands, applied in order in one transaction (none when
/// only the replicated state advances), the replication layer's applied state to record in the same
/// transaction, and where their outcomes go.
struct Proposal {
    commands: Vec<Command>,
    applied: Option<Bytes>,
    reply: syncer::Reply,
}

/// What the applier thread does, in queue order.
enum Work {
    Propose(Proposal),
    /// Replace the contents with the copy at `from`.
    Restore {
        from: PathBuf,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A command's result: the written record (for a delete: the last value, at the delete's revision; for
/// a compaction or a state-only proposal: only the revision it ran at) or why it was refused.
pub type Outcome = std::result::Result<Record, CommandError>;

/// The replication layer, when the store is replicated: every write of [`Store::apply`] goes through it
/// (it comes back to this store through [`Store::submit`] once committed), and reads that must be current
/// wait on its barrier first.
#[async_trait::async_trait]
pub trait Replicator: Send + Sync {
    /// Commits `command` in the replicated log and returns its outcome once applied here.
    async fn propose(&self, command: Command) -> Result<Outcome>;
    /// Returns once this store has applied everything committed before the call (a linearizable read
    /// point).
    async fn read_barrier(&self) -> Result<()>;
    /// Where this member stands, for /metrics.
    fn status(&self) -> ReplicationStatus;
}

/// A member's view of its replication group.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicationStatus {
    pub has_leader: bool,
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub voters: usize,
    pub learners: usize,
    /// Log entries this member proposed as leader, and the writes they carried.
    pub proposed_entries: u64,
    pub proposed_writes: u64,
    /// The bytes of entries in this member's log, as last measured.
    pub log_bytes: u64,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    proposals: mpsc::Sender<Work>,
    replicator: std::sync::OnceLock<Arc<dyn Replicator>>,
    /// Whether the syncer fsyncs each group of commits before publishing it (not once replicated).
    fsync_commits: Arc<std::sync::atomic::AtomicBool>,
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
        let fsync_commits = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let syncer = syncer::spawn(path.to_path_buf(), hub.clone(), metrics.clone(), fsync_commits.clone())?;
        let state = applier::State { conn, index: index.clone(), revision: counters.revision, hub: hub.clone() };
        let applier = Some(applier::spawn(state, rx, syncer, metrics.clone())?);
        let readers = read::Readers::new(path.to_path_buf(), hub.clone(), index);
        let replicator = Default::default();
        let inner = Inner { proposals, replicator, fsync_commits, applier, readers, hub, metrics };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// Routes every later write through `replicator` and makes current reads wait on its barrier. The
    /// replicated log, fsynced before a write commits, is then the durable record: a transaction lost
    /// with the page cache is applied again from the log at restart, so commits are no longer fsynced
    /// one by one (only before a snapshot lets the log behind it go, see [`Store::copy_to`]).
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) {
        let _ = self.inner.replicator.set(replicator);
        self.inner.fsync_commits.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Applies one write command (through the replication layer when there is one); returns the
    /// written record or why the command was refused. Returns only once the write is durable.
    pub async fn apply(&self, command: Command) -> Result<Outcome> {
        match self.inner.replicator.get() {
            Some(replicator) => replicator.propose(command).await,
            None => {
                let outcomes = self.submit(vec![command], None).await?.await.map_err(|_| StoreError::Closed)??;
                outcomes.into_iter().next().ok_or(StoreError::Closed)
            }
        }
    }

    /// Queues a committed entry for this store's applier (the replication layer's way in): `commands`,
    /// applied together in one transaction, and the replicated `applied` state recorded with them.
    /// Proposals apply in the order they are submitted; the returned channel gives the outcomes, one per
    /// command, once durable.
    pub(crate) async fn submit(
        &self,
        commands: Vec<Command>,
        applied: Option<Bytes>,
    ) -> Result<oneshot::Receiver<Result<Vec<Outcome>>>> {
        let (reply, rx) = oneshot::channel();
        let proposal = Proposal { commands, applied, reply };
        self.inner.proposals.send(Work::Propose(proposal)).await.map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// The replication layer's applied state last recorded with a write.
    pub async fn replicated_state(&self) -> Result<Option<Vec<u8>>> {
        self.inner.readers.replicated_state().await
    }

    /// Writes a consistent copy of the whole store to `to` (a new SQLite file), durably, and makes every
    /// write the copy holds durable in the store too (a Raft snapshot lets the log behind it be purged).
    pub async fn copy_to(&self, to: &Path) -> Result<()> {
        self.inner.readers.copy_to(to.to_path_buf()).await
    }

    /// Replaces the store's whole contents with the copy at `from` (see [`Store::copy_to`]); open
    /// watches end and must relist.
    pub async fn restore_from(&self, from: &Path) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let work = Work::Restore { from: from.to_path_buf(), reply };
        self.inner.proposals.send(work).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until reading here observes every write committed before the call.
    async fn read_barrier(&self) -> Result<()> {
        match self.inner.replicator.get() {
            Some(replicator) => replicator.read_barrier().await,
            None => Ok(()),
        }
    }

    /// Reads one key at the current revision (linearizable).
    pub async fn get(&self, key: &str) -> Result<Option<Record>> {
        self.read_barrier().await?;
        self.inner.readers.get(key.to_string()).await
    }

    /// Lists the keys under `prefix` (see [`ListOptions`]); without a revision, at the current one
    /// (linearizable).
    pub async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        if options.revision == 0 {
            self.read_barrier().await?;
        }
        self.inner.readers.list(prefix.to_string(), options).await
    }

    /// Watches the keys under `prefix`, starting after `after_revision` (events with greater revisions).
    pub async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        self.inner.readers.watch(prefix.to_string(), after_revision).await
    }

    /// The replication group as this member sees it (None when the store is not replicated).
    pub fn replication_status(&self) -> Option<ReplicationStatus> {
        self.inner.replicator.get().map(|replicator| replicator.status())
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

/// Writes a consistent copy of the store file at `database` (open in a running server or not) to `to`,
/// durably: for `tug snapshot save`, which runs beside the server.
pub fn copy_database(database: &Path, to: &Path) -> Result<()> {
    let source = rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(std::time::Duration::from_secs(5))?;
    restore::copy(&source, to)
}

#[cfg(test)]
mod tests;
