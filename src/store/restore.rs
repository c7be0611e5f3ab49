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
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        let mut dest = Connection::open(&partial)?;
        copy_all(source, &mut dest)?;
        // One self-contained file: the copy's WAL folded in and removed.
        dest.execute_batch("PRAGMA journal_mode = DELETE;")?;
    }
    std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| data_dir_error(&partial, e))?;
    std::fs::rename(&partial, to).map_err(|e| data_dir_error(to, e))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| data_dir_error(dir, e))?;
    Ok(())
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
    state.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let counters = read::load_counters(&state.conn)?;
    *state.index.write() = KeyIndex::load(&state.conn, counters.compacted)?;
    state.revision = counters.revision;
    state.hub.reset(counters.revision, counters.compacted);
    tracing::info!(from = %from.display(), revision = counters.revision, "store contents replaced");
    Ok(())
}

fn data_dir_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::DataDir { path: path.to_path_buf(), source }
}
