//! Reads: a small pool of read-only connections (WAL lets them run beside the writer), each read in one
//! snapshot transaction. Current state comes from `objects`; older revisions and watch backlogs from
//! `history`. A read returns only once its snapshot's revision is durable, so nobody sees a write that
//! a power loss could still take back (the applier commits before the syncer's fsync).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction};

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
    pub fn new(path: PathBuf, hub: Hub) -> Readers {
        Readers {
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_READS)),
            hub,
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

    /// Runs `f` in one read transaction, with the snapshot's current revision; returns its result once
    /// that revision is durable.
    async fn read_durable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>, i64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (out, snapshot) = self
            .with_conn(move |conn| {
                let tx = conn.transaction()?;
                let snapshot: i64 = tx.prepare_cached(super::CURRENT_REVISION_SQL)?.query_row([], |r| r.get(0))?;
                Ok((f(&tx, snapshot)?, snapshot))
            })
            .await?;
        self.hub.wait_durable(snapshot).await;
        Ok(out)
    }

    pub async fn get(&self, key: String) -> Result<Option<Record>> {
        self.read_durable(move |tx, _| {
            let record = tx
                .prepare_cached(
                    "SELECT h.value, o.create_revision, o.mod_revision FROM objects o
                     JOIN history h ON h.revision = o.mod_revision WHERE o.key = ?1",
                )?
                .query_row([&key], |row| {
                    Ok(Record {
                        key: key.clone(),
                        value: Bytes::from(row.get::<_, Vec<u8>>(0)?),
                        create_revision: row.get(1)?,
                        mod_revision: row.get(2)?,
                    })
                })
                .optional()?;
            Ok(record)
        })
        .await
    }

    pub async fn list(&self, prefix: String, options: ListOptions) -> Result<ListResult> {
        self.read_durable(move |tx, current| {
            let compacted: i64 =
                tx.query_row("SELECT value FROM counters WHERE name = 'compacted'", [], |r| r.get(0))?;
            let at = if options.revision == 0 { current } else { options.revision };
            if at < compacted {
                return Err(StoreError::Compacted { requested: at, compacted });
            }
            if at > current {
                return Err(StoreError::FutureRevision { requested: at, current });
            }
            let start = match &options.start_after {
                Some(after) if after.as_str() >= prefix.as_str() => format!("{after}\u{0}"),
                _ => prefix.clone(),
            };
            let end = prefix_end(&prefix);
            let fetch = if options.limit == 0 { -1 } else { options.limit as i64 + 1 };
            let sql = if at == current {
                "SELECT o.key, h.value, o.create_revision, o.mod_revision FROM objects o
                 JOIN history h ON h.revision = o.mod_revision
                 WHERE o.key >= ?1 AND o.key < ?2 ORDER BY o.key LIMIT ?3"
            } else {
                "SELECT h.key, h.value, h.create_revision, h.revision FROM history h
                 WHERE h.key >= ?1 AND h.key < ?2 AND h.event != 2 AND h.revision = (
                     SELECT MAX(revision) FROM history n WHERE n.key = h.key AND n.revision <= ?4)
                 ORDER BY h.key LIMIT ?3"
            };
            let mut stmt = tx.prepare_cached(sql)?;
            let mut records: Vec<Record> = if at == current {
                stmt.query_map(rusqlite::params![start, end, fetch], row_to_record)?.collect::<Result<_, _>>()?
            } else {
                stmt.query_map(rusqlite::params![start, end, fetch, at], row_to_record)?.collect::<Result<_, _>>()?
            };
            drop(stmt);
            let more = options.limit > 0 && records.len() > options.limit;
            records.truncate(if options.limit == 0 { records.len() } else { options.limit });
            Ok(ListResult { records, revision: at, more })
        })
        .await
    }

    /// Opens a watch on `prefix` for events after `after_revision`.
    pub async fn watch(&self, prefix: String, after_revision: i64) -> Result<WatchStream> {
        let live = self.hub.subscribe();
        let hub = self.hub.clone();
        let (prefix, backlog) = self
            .read_durable(move |conn, _| {
                let compacted: i64 =
                    conn.query_row("SELECT value FROM counters WHERE name = 'compacted'", [], |r| r.get(0))?;
                if after_revision < compacted {
                    return Err(StoreError::Compacted { requested: after_revision, compacted });
                }
                let end = prefix_end(&prefix);
                let mut stmt = conn.prepare_cached(
                    "SELECT h.key, h.value, h.create_revision, h.revision, h.event, (
                         SELECT p.value FROM history p WHERE p.key = h.key AND p.revision < h.revision
                         ORDER BY p.revision DESC LIMIT 1)
                     FROM history h WHERE h.revision > ?1 AND h.key >= ?2 AND h.key < ?3 ORDER BY h.revision",
                )?;
                let backlog = stmt
                    .query_map(rusqlite::params![after_revision, prefix, end], |row| {
                        let prev: Option<Vec<u8>> = row.get(5)?;
                        Ok(Event::from_stored(row.get(4)?, row_to_record(row)?, prev.map(Bytes::from)))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                drop(stmt);
                Ok((prefix, backlog))
            })
            .await?;
        Ok(hub.stream(prefix, after_revision, backlog, live))
    }
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
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), "/registry/pods0");
        assert_eq!(prefix_end("a"), "b");
    }
}
