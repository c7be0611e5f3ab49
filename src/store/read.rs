//! Reads: each resolves keys in the in-memory index at the durable revision (or the one asked for), then
//! fetches the values by revision from a small pool of read-only connections (WAL lets them run beside
//! the writer). A write committed but not yet fsynced is above the durable revision, so nobody reads a
//! write that a power loss could still take back.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension};

use super::command::value_at;
use super::index::{KeyIndex, SharedIndex, Version};
use super::watch::{Event, Hub, WatchStream};
use super::{schema, Record, Result, StoreError};

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Read at this revision instead of the current one (0 = current).
    pub revision: i64,
    /// Only keys strictly greater than this (for paging).
    pub start_after: Option<String>,
    /// At most this many records (0 = all).
    pub limit: usize,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub records: Vec<Record>,
    /// The revision the list was read at.
    pub revision: i64,
    /// Whether keys remain after the last record.
    pub more: bool,
}

/// Counters read at open.
pub(super) struct Counters {
    pub revision: i64,
    pub compacted: i64,
}

pub(super) fn load_counters(conn: &Connection) -> Result<Counters> {
    let revision = conn.query_row(super::CURRENT_REVISION_SQL, [], |r| r.get(0))?;
    let compacted = conn.query_row("SELECT value FROM counters WHERE name = 'compacted'", [], |r| r.get(0))?;
    Ok(Counters { revision, compacted })
}

/// How many reads run at once. Each holds a connection (with its page cache) and a blocking thread,
/// so the bound keeps memory and thread count flat under load; SQLite reads are short.
const MAX_CONCURRENT_READS: usize = 4;

/// The pool of read connections.
#[derive(Clone)]
pub(super) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<tokio::sync::Semaphore>,
    hub: Hub,
    index: SharedIndex,
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    "\u{7f}".to_string()
}

impl Readers {
    pub fn new(path: PathBuf, hub: Hub, index: SharedIndex) -> Readers {
        Readers {
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_READS)),
            hub,
            index,
        }
    }

    /// Runs `f` on a pooled connection in a blocking task.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = this.idle.lock().ok().and_then(|mut idle| idle.pop());
            let mut conn = match pooled {
                Some(conn) => conn,
                None => schema::open_reader(&this.path)?,
            };
            let out = f(&mut conn);
            if let Ok(mut idle) = this.idle.lock() {
                idle.push(conn);
            }
            out
        })
        .await?
    }

    /// The replication layer's applied state, as last recorded.
    pub async fn replicated_state(&self) -> Result<Option<Vec<u8>>> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("SELECT state FROM raft_applied WHERE id = 0")?
                .query_row([], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    /// A consistent copy of the whole database at `to`; then everything the copy holds is made durable
    /// in the database itself too.
    pub async fn copy_to(&self, to: PathBuf) -> Result<()> {
        self.with_conn(move |conn| {
            super::restore::copy(conn, &to)?;
            super::restore::sync_files(conn)
        })
        .await
    }

    /// Resolves keys at `revision` with `pick` and fetches their values, off the async threads (a large
    /// range walks many keys). `None` when a value was compacted away meanwhile (a compaction committed
    /// after the index was read).
    async fn resolve(
        &self,
        revision: i64,
        pick: impl FnOnce(&KeyIndex) -> Vec<(String, Version)> + Send + 'static,
    ) -> Result<Option<Vec<Record>>> {
        let index = self.index.clone();
        self.with_conn(move |conn| {
            let versions = {
                let index = index.read();
                index
                    .readable_at(revision)
                    .map_err(|compacted| StoreError::Compacted { requested: revision, compacted })?;
                pick(&index)
            };
            let tx = conn.transaction()?;
            let mut records = Vec::with_capacity(versions.len());
            for (key, version) in versions {
                let Some(value) = value_at(&tx, version.revision)? else { return Ok(None) };
                records.push(record(key, value, version));
            }
            Ok(Some(records))
        })
        .await
    }

    /// The key at the durable revision. A compaction racing the read makes it read again at the newer
    /// revision, as a list does: the current state is always readable.
    pub async fn get(&self, key: String) -> Result<Option<Record>> {
        loop {
            let at = self.hub.current_revision();
            let key = key.clone();
            let pick = move |index: &KeyIndex| index.at(&key, at).map(|v| (key, v)).into_iter().collect();
            if let Some(mut records) = self.resolve(at, pick).await? {
                return Ok(records.pop());
            }
        }
    }

    pub async fn list(&self, prefix: String, options: ListOptions) -> Result<ListResult> {
        let start = match &options.start_after {
            Some(after) if after.as_str() >= prefix.as_str() => format!("{after}\u{0}"),
            _ => prefix.clone(),
        };
        let end = prefix_end(&prefix);
        let fetch = if options.limit == 0 { 0 } else { options.limit + 1 };
        loop {
            let current = self.hub.current_revision();
            let at = if options.revision == 0 { current } else { options.revision };
            if at > current {
                return Err(StoreError::FutureRevision { requested: at, current });
            }
            let (from, to) = (start.clone(), end.clone());
            match self.resolve(at, move |index| index.range_at(&from, &to, at, fetch)).await? {
                Some(mut records) => {
                    let more = options.limit > 0 && records.len() > options.limit;
                    records.truncate(if options.limit == 0 { records.len() } else { options.limit });
                    return Ok(ListResult { records, revision: at, more });
                }
                // The current state moved on; an older revision asked for is gone for good.
                None if options.revision == 0 => continue,
                None => return Err(StoreError::Compacted { requested: at, compacted: self.hub.compacted_revision() }),
            }
        }
    }

    /// Opens a watch on `prefix` for events after `after_revision`.
    pub async fn watch(&self, prefix: String, after_revision: i64) -> Result<WatchStream> {
        // Subscribe before reading the durable revision: the hub advances the revision before sending a
        // batch's events, so every event is either at or below `upto` (backlog) or received live.
        let live = self.hub.subscribe();
        let upto = self.hub.current_revision();
        let (hub, index) = (self.hub.clone(), self.index.clone());
        let (prefix, backlog) = self
            .with_conn(move |conn| {
                let tx = conn.transaction()?;
                // In the same snapshot as the backlog, so a compaction cannot remove part of it unseen.
                let compacted: i64 =
                    tx.query_row("SELECT value FROM counters WHERE name = 'compacted'", [], |r| r.get(0))?;
                if after_revision < compacted {
                    return Err(StoreError::Compacted { requested: after_revision, compacted });
                }
                let mut stmt = tx.prepare_cached(
                    "SELECT key, value, create_revision, revision, event FROM history
                     WHERE revision > ?1 AND revision <= ?2 AND key >= ?3 AND key < ?4 ORDER BY revision",
                )?;
                let stored = stmt
                    .query_map(rusqlite::params![after_revision, upto, prefix, prefix_end(&prefix)], |row| {
                        Ok((row.get::<_, u8>(4)?, row_to_record(row)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                drop(stmt);
                // Each event's previous version, from the index as it was when the snapshot was read: if a
                // compaction past `after_revision` has pruned it since, the previous values may be gone.
                let befores: Vec<Option<Version>> = {
                    let index = index.read();
                    index
                        .readable_at(after_revision)
                        .map_err(|compacted| StoreError::Compacted { requested: after_revision, compacted })?;
                    stored.iter().map(|(_, record)| index.before(&record.key, record.mod_revision)).collect()
                };
                let mut backlog = Vec::with_capacity(stored.len());
                for ((event, record), before) in stored.into_iter().zip(befores) {
                    let prev = match before.filter(|v| !v.deleted) {
                        Some(version) => Some(
                            value_at(&tx, version.revision)?
                                .ok_or(StoreError::Compacted { requested: after_revision, compacted })?,
                        ),
                        None => None,
                    };
                    backlog.push(Event::from_stored(event, record, prev));
                }
                Ok((prefix, backlog))
            })
            .await?;
        Ok(hub.stream(prefix, after_revision, backlog, live))
    }
}

fn record(key: String, value: Bytes, version: Version) -> Record {
    Record { key, value, create_revision: version.create_revision, mod_revision: version.revision }
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        key: row.get(0)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::KeyIndex;

    /// A store file whose history holds `/r/a` created at 1 (value "1") and updated at 2 (value "2"),
    /// with its index; readers are built over it with whatever hub a test needs.
    fn two_versions_of_a() -> (tempfile::TempDir, PathBuf, SharedIndex) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let conn = schema::open_writer(&path).expect("open");
        conn.execute_batch("INSERT INTO history VALUES (1, '/r/a', 0, 1, x'31'), (2, '/r/a', 1, 1, x'32');")
            .expect("rows");
        let index = SharedIndex::new(KeyIndex::load(&conn, 0).expect("index"));
        (dir, path, index)
    }

    #[tokio::test]
    async fn a_watch_racing_a_compaction_is_told_to_relist_rather_than_lose_previous_values() {
        let (_dir, path, index) = two_versions_of_a();
        // The backlog's snapshot predates a compaction to 2 that the index has already applied.
        index.write().compact(2);
        let readers = Readers::new(path, Hub::new(2, 0), index);
        let watch = readers.watch("/r/".into(), 0).await;
        assert!(matches!(watch, Err(StoreError::Compacted { requested: 0, compacted: 2 })));
    }

    #[tokio::test]
    async fn reads_stop_at_the_durable_revision() {
        let (_dir, path, index) = two_versions_of_a();
        // Revision 2 is committed but not yet fsynced: the durable revision is still 1.
        let hub = Hub::new(1, 0);
        let readers = Readers::new(path, hub.clone(), index);
        let value = |r: Option<Record>| r.map(|r| (r.value, r.mod_revision));
        assert_eq!(value(readers.get("/r/a".into()).await.expect("get")), Some((Bytes::from_static(b"1"), 1)));
        let list = readers.list("/r/".into(), ListOptions::default()).await.expect("list");
        assert_eq!((list.revision, list.records.len(), &list.records[0].value[..]), (1, 1, &b"1"[..]));
        hub.publish(Vec::new(), 2, 0);
        assert_eq!(value(readers.get("/r/a".into()).await.expect("get")), Some((Bytes::from_static(b"2"), 2)));
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), "/registry/pods0");
        assert_eq!(prefix_end("a"), "b");
    }
}
