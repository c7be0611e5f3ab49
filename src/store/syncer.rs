//! The syncer: makes committed transactions durable before anyone learns of them (unless the store is
//! replicated, see below). The applier commits without an fsync (WAL with `synchronous=NORMAL`, which
//! SQLite keeps consistent across power loss but not durable); this thread fsyncs the WAL file once for every transaction committed since its previous
//! fsync, and only then publishes their changes to the watch hub and answers their proposers. The fsync of
//! one group thus overlaps the applying of the next, as etcd overlaps its WAL sync with applying, and an
//! acknowledged write is on disk. While an fsync runs the applier keeps its transaction open and adds
//! the writes that arrive, so that transactions grow with the load instead of each writing a few pages.
//! Reads wait for the published revision the same way (see `read`). Once the store is replicated, the
//! Raft log (fsynced before a write commits) is the durable record instead and the syncer only publishes,
//! in commit order: a transaction lost with the page cache is applied again from the log at restart.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use tokio::sync::oneshot;

use super::applier::Metrics;
use super::command::Change;
use super::watch::Hub;
use super::{Record, Result, StoreError};

/// The outcome a proposer waits for.
pub(super) type Outcome = std::result::Result<Record, super::CommandError>;
pub(super) type Reply = oneshot::Sender<Result<Vec<Outcome>>>;

/// One committed (not yet durable) transaction.
pub(super) struct Committed {
    /// Each proposal's outcomes, one per command.
    pub answers: Vec<(Reply, Vec<Outcome>)>,
    pub changes: Vec<Change>,
    pub revision: i64,
    pub compacted: i64,
}

/// The applier's side of the syncer: where committed transactions go, and whether an fsync is still
/// to come for some of them (while it is, the applier keeps its transaction open for more writes).
pub(super) struct SyncerLink {
    sender: mpsc::Sender<Committed>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Transactions handed over and not yet durable.
    pending: AtomicUsize,
    /// The applier thread, woken whenever the syncer finishes a group.
    applier: OnceLock<Thread>,
}

impl SyncerLink {
    /// Registers the calling thread as the applier to wake when the syncer becomes free.
    pub fn register_applier(&self) {
        let _ = self.shared.applier.set(std::thread::current());
    }

    /// Hands over a committed transaction; false if the syncer is gone.
    pub fn send(&self, committed: Committed) -> bool {
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        self.sender.send(committed).is_ok()
    }

    /// Whether committed transactions are still waiting for their fsync.
    pub fn busy(&self) -> bool {
        self.shared.pending.load(Ordering::Acquire) > 0
    }
}

/// Starts the syncer thread for the database at `db_path`; the applier sends it each committed
/// transaction. It fsyncs while `fsync_commits` holds (when the store is replicated, the log is the
/// durable record and the syncer only publishes, in commit order).
pub(super) fn spawn(
    db_path: PathBuf,
    hub: Hub,
    metrics: Metrics,
    fsync_commits: Arc<AtomicBool>,
) -> Result<SyncerLink> {
    let (sender, rx) = mpsc::channel();
    let shared = Arc::new(Shared::default());
    let mut wal = WalFile { path: wal_path(db_path), file: None };
    let syncer_shared = shared.clone();
    std::thread::Builder::new()
        .name("tug-store-sync".into())
        .spawn(move || run(&mut wal, rx, &syncer_shared, hub, metrics, &fsync_commits))
        .map_err(|e| StoreError::DataDir { path: "syncer thread".into(), source: e })?;
    Ok(SyncerLink { sender, shared })
}

fn wal_path(db_path: PathBuf) -> PathBuf {
    let mut name = db_path.into_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

fn run(
    wal: &mut WalFile,
    rx: mpsc::Receiver<Committed>,
    shared: &Shared,
    hub: Hub,
    metrics: Metrics,
    fsync_commits: &AtomicBool,
) {
    while let Ok(first) = rx.recv() {
        let group: Vec<Committed> = std::iter::once(first).chain(rx.try_iter()).collect();
        if fsync_commits.load(Ordering::Acquire) {
            let started = Instant::now();
            if let Err(e) = wal.sync() {
                // What reached the disk is unknown (a failed fsync may have dropped dirty pages), so nothing
                // of this group may be acknowledged; exiting makes SQLite recover a consistent state at start.
                tracing::error!(error = %e, path = %wal.path.display(), "fsync of the store's WAL failed; exiting");
                std::process::exit(1);
            }
            metrics.record_sync(started.elapsed());
        }
        let synced = group.len();
        for committed in group {
            hub.publish(committed.changes, committed.revision, committed.compacted);
            for (reply, outcomes) in committed.answers {
                let _ = reply.send(Ok(outcomes));
            }
        }
        shared.pending.fetch_sub(synced, Ordering::AcqRel);
        if let Some(applier) = shared.applier.get() {
            applier.unpark();
        }
    }
    tracing::debug!("store syncer stopped");
}

/// The WAL file, reopened if SQLite ever replaces it (an fsync must reach the file SQLite writes).
struct WalFile {
    path: PathBuf,
    /// The open file and its (device, inode).
    file: Option<(File, (u64, u64))>,
}

impl WalFile {
    fn sync(&mut self) -> std::io::Result<()> {
        let meta = std::fs::metadata(&self.path)?;
        let identity = (meta.dev(), meta.ino());
        let file = match self.file.take() {
            Some((file, open)) if open == identity => file,
            _ => {
                // A new WAL file: its directory entry must be durable too, or the file could vanish.
                let file = File::open(&self.path)?;
                if let Some(dir) = self.path.parent() {
                    File::open(dir)?.sync_all()?;
                }
                file
            }
        };
        let synced = file.sync_data();
        self.file = Some((file, identity));
        synced
    }
}
