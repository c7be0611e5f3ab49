//! Opening the SQLite file: pragmas (WAL, synchronous=NORMAL with the syncer's fsync — or, replicated,
//! the Raft log — for durability) and the numbered migrations embedded from `migrations/`, applied once
//! each inside a transaction.

use rusqlite::Connection;
use std::path::Path;

use super::{Result, StoreError};

/// The numbered migrations, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_objects_and_history.sql")),
    (2, include_str!("../../migrations/0002_values_only_in_history.sql")),
    (3, include_str!("../../migrations/0003_key_index_in_memory.sql")),
    (4, include_str!("../../migrations/0004_raft_applied.sql")),
];

/// Opens (creating if needed) the database, brings its schema up to date and makes everything in it
/// durable before anything is served from it.
pub fn open_writer(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    // auto_vacuum must be chosen before the first table exists; it lets freed pages be returned to the OS.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    configure(&conn)?;
    migrate(&mut conn)?;
    make_durable(&conn, path)?;
    Ok(conn)
}

/// After a crash the WAL may hold commits that were never fsynced (never acknowledged) but that the page
/// cache still shows: a full checkpoint syncs them into the database file before any revision in them is
/// served. The directory is synced too, so a newly created database file cannot vanish.
fn make_durable(conn: &Connection, path: &Path) -> Result<()> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("the store's startup checkpoint could not complete (is another tug using the data dir?)".into()),
        )
        .into());
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::DataDir { path: dir.to_path_buf(), source })?;
    }
    Ok(())
}

/// Opens a connection for reads.
pub fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_prepared_statement_cache_capacity(32);
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL lets readers run beside the writer. synchronous=NORMAL keeps the file consistent across power
    // loss (the WAL is synced before each checkpoint, the database after it) but does not fsync at commit:
    // the syncer thread fsyncs the WAL after each group of commits and only then acknowledges them, so an
    // acknowledged write survives power loss (replicated, the Raft log is fsynced instead). The WAL is
    // truncated back to this size after checkpoints.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA cache_size = -4096;
         PRAGMA foreign_keys = OFF;",
    )?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY);")?;
    for (version, sql) in MIGRATIONS {
        let applied: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)", [version], |row| {
                row.get(0)
            })?;
        if applied {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [version])?;
        tx.commit()?;
        tracing::info!(version, "applied store migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        drop(open_writer(&path).expect("first open"));
        let conn = open_writer(&path).expect("second open");
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).expect("count");
        assert_eq!(count, MIGRATIONS.len() as i64);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("mode");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn opening_folds_commits_left_in_the_wal_into_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let wal = dir.path().join("state.db-wal");
        let first = open_writer(&path).expect("first open");
        first.execute_batch("INSERT INTO history VALUES (1, '/r/a', 0, 1, x'31');").expect("commit");
        // As after a crash: the commit is in the WAL, not yet in the database file.
        assert!(std::fs::metadata(&wal).expect("wal").len() > 0);
        let second = open_writer(&path).expect("second open");
        assert_eq!(std::fs::metadata(&wal).expect("wal").len(), 0, "checkpointed and truncated at open");
        let rows: i64 = second.query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0)).expect("count");
        assert_eq!(rows, 1);
        drop(first);
    }
}
