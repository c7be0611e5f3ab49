//! The Raft log and vote in their own SQLite file (`raft.db` beside the store), every change committed
//! with `synchronous=FULL`, so it is fsynced before openraft is told it is done — the storage contract
//! under which a vote is never forgotten and an acknowledged entry never lost. The newest entries are
//! also kept in memory (`recent_entries`) for the reads that replication and applying make.

// openraft's storage traits fix the error type, StorageError, which is large.
#![allow(clippy::result_large_err)]

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader};
use rusqlite::{Connection, OptionalExtension};

use super::recent_entries::RecentEntries;
use super::types::{decode, encode, Entry, IoError, LogId, StorageError, TypeConfig, Vote};

/// The log store; clones share the one connection and the entries kept in memory.
#[derive(Clone)]
pub struct LogStore {
    conn: Arc<Mutex<Connection>>,
    recent: Arc<Mutex<RecentEntries>>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);";

const VOTE: &str = "vote";
/// The meta row naming the entries' encoding.
const FORMAT: &str = "format";
/// The encoding of the entries this tug writes and reads (postcard of openraft's `Entry` carrying a
/// batch of store commands); a log written in another is refused rather than misread.
const FORMAT_VERSION: u32 = 1;
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

impl LogStore {
    /// Opens (creating) the log file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<LogStore> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA journal_size_limit = 16777216;",
        )?;
        conn.execute_batch(SCHEMA)?;
        check_format(&conn, path)?;
        Ok(LogStore { conn: Arc::new(Mutex::new(conn)), recent: Default::default() })
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEntries> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the connection off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StorageError::from(IoError::read_logs(&e)))?
    }

    async fn read_meta<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, StorageError> {
        self.blocking(move |conn| read_meta(conn, name)).await
    }

    async fn write_meta<T: serde::Serialize>(&self, name: &'static str, value: &T) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(|e| IoError::write(&e))?;
        self.blocking(move |conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(rusqlite::params![name, bytes]))
                .map_err(|e| IoError::write(&e))?;
            Ok(())
        })
        .await
    }
}

/// Records [`FORMAT_VERSION`] in a log that has none (a new one, or one from before versions, whose
/// entries are in this format), and refuses a log in another.
fn check_format(conn: &Connection, path: &Path) -> anyhow::Result<()> {
    match read_meta::<u32>(conn, FORMAT) {
        Ok(None) => {
            let bytes = encode(&FORMAT_VERSION)?;
            conn.execute("INSERT INTO meta (name, value) VALUES (?1, ?2)", rusqlite::params![FORMAT, bytes])?;
            Ok(())
        }
        Ok(Some(FORMAT_VERSION)) => Ok(()),
        Ok(Some(found)) => anyhow::bail!(
            "the Raft log {} is in format {found}, this tug reads format {FORMAT_VERSION}: start the tug version \
             that wrote it",
            path.display()
        ),
        Err(error) => anyhow::bail!("cannot read the format of the Raft log {}: {error}", path.display()),
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(conn: &Connection, name: &str) -> Result<Option<T>, StorageError> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map_err(|e| IoError::read(&e))?;
    bytes.map(|b| decode(&b).map_err(|e| IoError::read(&e).into())).transpose()
}

/// The most bytes of entries one AppendEntries carries (one larger entry goes alone).
const APPEND_BYTES: usize = 256 * 1024;

/// The inclusive index bounds of `range`.
fn bounds(range: &impl RangeBounds<u64>) -> (i64, i64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s as i64,
        Bound::Excluded(&s) => s as i64 + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.min(i64::MAX as u64) as i64,
        Bound::Excluded(&e) => e.min(i64::MAX as u64) as i64 - 1,
        Bound::Unbounded => i64::MAX,
    };
    (start, end)
}

impl LogStore {
    /// The entries at indexes `start..=end`, in order; with a `budget`, only as many as fit in that
    /// many bytes (always at least one).
    async fn read_entries(&self, start: i64, end: i64, budget: Option<usize>) -> Result<Vec<Entry>, StorageError> {
        if end < start {
            return Ok(Vec::new());
        }
        if let Some(kept) = self.recent().get(start.max(0) as u64, end as u64, budget) {
            return Ok(kept);
        }
        self.blocking(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT entry FROM log WHERE idx >= ?1 AND idx <= ?2 ORDER BY idx")
                .map_err(|e| IoError::read_logs(&e))?;
            let mut rows = statement.query([start, end]).map_err(|e| IoError::read_logs(&e))?;
            let (mut entries, mut bytes) = (Vec::new(), 0);
            while let Some(row) = rows.next().map_err(|e| IoError::read_logs(&e))? {
                let encoded = row.get_ref(0).and_then(|v| v.as_blob().map_err(Into::into));
                let encoded = encoded.map_err(|e| IoError::read_logs(&e))?;
                bytes += encoded.len();
                if budget.is_some_and(|budget| bytes > budget) && !entries.is_empty() {
                    break;
                }
                entries.push(decode(encoded).map_err(|e| IoError::read_logs(&e))?);
            }
            Ok(entries)
        })
        .await
    }

    /// The bytes of the entries up to `snapshot` (covered by it), of those after it up to `applied`,
    /// and of the rest.
    pub async fn bytes_by_range(&self, snapshot: Option<u64>, applied: Option<u64>) -> Result<[u64; 3], StorageError> {
        let index = |i: Option<u64>| i.map_or(-1, |i| i.min(i64::MAX as u64) as i64);
        let (snapshot, applied) = (index(snapshot), index(applied));
        self.blocking(move |conn| {
            conn.query_row(
                "SELECT COALESCE(SUM(CASE WHEN idx <= ?1 THEN length(entry) END), 0), \
                        COALESCE(SUM(CASE WHEN idx > ?1 AND idx <= ?2 THEN length(entry) END), 0), \
                        COALESCE(SUM(CASE WHEN idx > ?2 AND idx > ?1 THEN length(entry) END), 0) FROM log",
                [snapshot, applied],
                |row| Ok([row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64, row.get::<_, i64>(2)? as u64]),
            )
            .map_err(|e| IoError::read_logs(&e).into())
        })
        .await
    }

    /// The newest index up to `upto` such that the entries after it, up to `upto`, hold at most
    /// `keep` bytes: purging up to there keeps those for followers slightly behind. None when all of
    /// them fit.
    pub async fn purge_point(&self, upto: u64, keep: u64) -> Result<Option<u64>, StorageError> {
        let (upto, keep) = (upto.min(i64::MAX as u64) as i64, keep.min(i64::MAX as u64) as i64);
        self.blocking(move |conn| {
            conn.query_row(
                "SELECT MAX(idx) FROM (SELECT idx, SUM(length(entry)) OVER (ORDER BY idx DESC) AS from_here \
                 FROM log WHERE idx <= ?1) WHERE from_here > ?2",
                [upto, keep],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|index| index.map(|i| i as u64))
            .map_err(|e| IoError::read_logs(&e).into())
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.read_entries(start, end, None).await
    }

    /// What the leader sends a follower in one AppendEntries: at most [`APPEND_BYTES`] of entries, so
    /// that a follower far behind gets it within openraft's deadline (the heartbeat interval).
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&(start..end));
        self.read_entries(start, end, Some(APPEND_BYTES)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|conn| {
            let last_purged_log_id: Option<LogId> = read_meta(conn, PURGED)?;
            let last: Option<Vec<u8>> = conn
                .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| r.get(0))
                .optional()
                .map_err(|e| IoError::read_logs(&e))?;
            let last_log_id = match last {
                Some(bytes) => {
                    let entry: Entry = decode(&bytes).map_err(|e| IoError::read_logs(&e))?;
                    Some(entry.log_id)
                }
                None => last_purged_log_id,
            };
            Ok(LogState { last_purged_log_id, last_log_id })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED).await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded = entries
            .iter()
            .map(|entry| encode(entry).map(|bytes| (entry.log_id.index as i64, bytes)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IoError::write_logs(&e))?;
        let sizes: Vec<usize> = encoded.iter().map(|(_, bytes)| bytes.len()).collect();
        let result = self
            .blocking(move |conn| {
                let tx = conn.transaction().map_err(|e| IoError::write_logs(&e))?;
                {
                    let mut insert = tx
                        .prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")
                        .map_err(|e| IoError::write_logs(&e))?;
                    for (index, bytes) in encoded {
                        insert.execute(rusqlite::params![index, bytes]).map_err(|e| IoError::write_logs(&e))?;
                    }
                }
                // synchronous=FULL: the commit returns once the WAL is fsynced.
                tx.commit().map_err(|e| IoError::write_logs(&e))?;
                Ok(())
            })
            .await;
        if result.is_ok() {
            self.recent().appended(entries.into_iter().zip(sizes));
        }
        let io_result = result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(io_result);
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent().truncated(log_id.index);
        let from = log_id.index as i64;
        self.blocking(move |conn| {
            conn.execute("DELETE FROM log WHERE idx >= ?1", [from]).map_err(|e| IoError::write_logs(&e))?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_meta(PURGED, &log_id).await?;
        self.recent().purged(log_id.index);
        let upto = log_id.index as i64;
        self.blocking(move |conn| {
            conn.execute("DELETE FROM log WHERE idx <= ?1", [upto]).map_err(|e| IoError::write_logs(&e))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openraft's own conformance suite for log storage (with the state machine over a real store).
    #[test]
    fn passes_openrafts_storage_suite() {
        openraft::testing::Suite::test_all(super::super::testing::StoreBuilder).expect("suite");
    }

    /// A new log records its format; a log in another format is refused with both formats named.
    #[test]
    fn a_log_in_another_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.db");
        drop(LogStore::open(&path).expect("new log"));
        LogStore::open(&path).expect("the same format reopens");
        let conn = Connection::open(&path).expect("sqlite");
        let other = encode(&(FORMAT_VERSION + 1)).expect("encode");
        conn.execute("UPDATE meta SET value = ?1 WHERE name = ?2", rusqlite::params![other, FORMAT]).expect("update");
        drop(conn);
        let refused = LogStore::open(&path).err().expect("refused").to_string();
        assert!(refused.contains("is in format 2, this tug reads format 1"), "{refused}");
    }
}
