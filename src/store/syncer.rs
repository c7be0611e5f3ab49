//! The syncer: makes committed transactions durable before anyone learns of them. The applier commits
//! without an fsync (WAL with `synchronous=NORMAL`, which SQLite keeps consistent across power loss but
//! not durable); this thread fsyncs the WAL file once for every transaction committed since its previous
//! fsync, and only then publishes their changes to the watch hub and answers their proposers. The fsync of
//! one group thus overlaps the applying of the next, as etcd overlaps its WAL sync with applying, and an
//! acknowledged write is on disk. Reads wait for the durable revision the same way (see `read`).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::applier::Metrics;
use super::command::Change;
use super::watch::Hub;
use super::{Record, Result, StoreError};

/// The outcome a proposer waits for.
pub(super) type Outcome = std::result::Result<Record, super::CommandError>;
pub(super) type Reply = oneshot::Sender<Result<Outcome>>;

/// One committed (not yet durable) transaction.
pub(super) struct Committed {
    pub answers: Vec<(Reply, Outcome)>,
    pub changes: Vec<Change>,
    pub revision: i64,
    pub compacted: i64,
}

/// Starts the syncer thread for the database at `db_path`; the applier sends it each committed transaction.
pub(super) fn spawn(db_path: PathBuf, hub: Hub, metrics: Metrics) -> Result<mpsc::Sender<Committed>> {
    let (tx, rx) = mpsc::channel();
    let mut wal = WalFile { path: wal_path(db_path), file: None };
    std::thread::Builder::new()
        .name("tug-store-sync".into())
        .spawn(move || run(&mut wal, rx, hub, metrics))
        .map_err(|e| StoreError::DataDir { path: "syncer thread".into(), source: e })?;
    Ok(tx)
}

fn wal_path(db_path: PathBuf) -> PathBuf {
    let mut name = db_path.into_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

fn run(wal: &mut WalFile, rx: mpsc::Receiver<Committed>, hub: Hub, metrics: Metrics) {
    while let Ok(first) = rx.recv() {
        let group: Vec<Committed> = std::iter::once(first).chain(rx.try_iter()).collect();
        let started = Instant::now();
        if let Err(e) = wal.sync() {
            // What reached the disk is unknown (a failed fsync may have dropped dirty pages), so nothing
            // of this group may be acknowledged; exiting makes SQLite recover a consistent state at start.
            tracing::error!(error = %e, path = %wal.path.display(), "fsync of the store's WAL failed; exiting");
            std::process::exit(1);
        }
        metrics.record_sync(started.elapsed());
        for committed in group {
            hub.publish(committed.changes, committed.revision, committed.compacted);
            for (reply, outcome) in committed.answers {
                let _ = reply.send(Ok(outcome));
            }
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
