//! Whole-store copies: taking a consistent copy of the open store (a Raft snapshot, `tug snapshot save`)
//! and replacing the open store's contents with one (a snapshot installed from the leader, a restore),
//! through SQLite's online backup, so readers keep their connections and see either side whole.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::applier::State;
use super::index::KeyIndex;
use super::syncer::SyncerLink;
use super::{read, Result, StoreError};

/// Copies every page of `source` into `dest` in one step, so the copy is one read transaction's
/// consistent view; waits while the other side is locked.
fn copy_all(source: &Connection, dest: &mut Connection) -> Result<()> {
    let backup = Backup::new(source, dest)?;
    for _ in 0..1000 {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            // Not possible for an unbounded step; kept going all the same.
            StepResult::More => continue,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("the store stayed locked while copying it".into()),
    )
    .into())
}

/// Writes a consistent copy of the database behind `source` to `to`, durably (written beside it and
/// renamed into place, so `to` is never a partial copy).
pub(super) fn copy(source: &Connection, to: &Path) -> Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| data_dir_error(dir, e))?;
    let mut partial = to.as_os_str().to_owned();
    partial.push(format!(".{}.partial", uuid::Uuid::new_v4()));
    let partial = std::path::PathBuf::from(partial);
    let copied = copy_into(source, &partial).and_then(|()| {
        std::fs::rename(&partial, to).map_err(|e| data_dir_error(to, e))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| data_dir_error(dir, e))
    });
    if copied.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    copied
}

/// Copies `source` into a new self-contained file at `path` (no WAL beside it), fsynced.
fn copy_into(source: &Connection, path: &Path) -> Result<()> {
    {
        let mut dest = Connection::open(path)?;
        copy_all(source, &mut dest)?;
        dest.execute_batch("PRAGMA journal_mode = DELETE;")?;
    }
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| data_dir_error(path, e))
}

/// On the applier thread: replaces the store's contents with the copy at `from`, reloads the key index and
/// counters, and ends every watch (their revisions may no longer exist; watchers relist).
pub(super) fn run(state: &mut State, from: &Path, syncer: &SyncerLink) -> Result<()> {
    // Transactions already committed are published first, so no event of the old contents follows.
    while syncer.busy() {
        std::thread::park_timeout(Duration::from_millis(1));
    }
    let source = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    copy_all(&source, &mut state.conn)?;
    make_durable(&state.conn)?;
    let counters = read::load_counters(&state.conn)?;
    *state.index.write() = KeyIndex::load(&state.conn, counters.compacted)?;
    state.revision = counters.revision;
    state.hub.reset(counters.revision, counters.compacted);
    tracing::info!(from = %from.display(), revision = counters.revision, "store contents replaced");
    Ok(())
}

/// The restored pages went through a commit without the syncer: they are made durable here, before
/// the restore is acknowledged (the Raft log is purged behind a snapshot once it is installed). The
/// checkpoint may be held back by readers, so the WAL is fsynced whatever it did, and the file too.
fn make_durable(conn: &Connection) -> Result<()> {
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0))?;
    sync_files(conn)
}

/// Fsyncs the WAL and then the database file of `conn`'s database: every transaction committed before
/// the call is durable after it (one a checkpoint moved out of the WAL meanwhile was fsynced into the
/// file by that checkpoint, or is by the second fsync).
pub(super) fn sync_files(conn: &Connection) -> Result<()> {
    let database =
        conn.path().map(Path::new).ok_or_else(|| data_dir_error(Path::new("?"), std::io::Error::other("no path")))?;
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    for file in [Path::new(&wal), database] {
        match std::fs::File::open(file) {
            Ok(f) => f.sync_all().map_err(|e| data_dir_error(file, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(data_dir_error(file, e)),
        }
    }
    Ok(())
}

fn data_dir_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::DataDir { path: path.to_path_buf(), source }
}
