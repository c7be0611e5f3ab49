//! The fault test's last check: every member's store holds the same contents. Once all servers have
//! applied the same log index they are stopped, and each store file is hashed up to the newest revision
//! all of them hold (the servers keep renewing their Leases, so one may stop a write ahead) and above
//! the newest compaction any of them applied (one may stop before applying it): every history row
//! (revision, key, event, create revision, value) in revision order.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use super::common::{eventually_within, metric, TugServer};

/// Waits until every server reports the same applied Raft index and store revision.
pub fn wait_until_caught_up(servers: &[TugServer]) {
    eventually_within(Duration::from_secs(30), "every server applied the same log", || {
        let positions: Vec<_> =
            servers.iter().map(|s| (metric(s, "tug_raft_applied_index"), metric(s, "tug_store_revision"))).collect();
        positions[0].0.is_some() && positions.iter().all(|p| *p == positions[0])
    });
}

/// The newest revision of the stopped server with data dir `data_dir`, and the revision it compacted to.
pub fn revisions(data_dir: &Path) -> (i64, i64) {
    let conn = open(data_dir);
    let newest = conn.query_row("SELECT COALESCE(MAX(revision), 0) FROM history", [], |r| r.get(0)).expect("revision");
    let compacted =
        conn.query_row("SELECT value FROM counters WHERE name = 'compacted'", [], |r| r.get(0)).expect("compacted");
    (newest, compacted)
}

/// The store of the stopped server with data dir `data_dir` from after revision `after` up to
/// `upto`: its history rows and a hash of them.
pub fn hash(data_dir: &Path, after: i64, upto: i64) -> (usize, u64) {
    let conn = open(data_dir);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut rows = 0;
    let mut history = conn
        .prepare(
            "SELECT revision, key, event, create_revision, value FROM history \
             WHERE revision > ?1 AND revision <= ?2 ORDER BY revision",
        )
        .expect("history");
    let mut cursor = history.query([after, upto]).expect("history rows");
    while let Some(row) = cursor.next().expect("a history row") {
        row.get::<_, i64>(0).expect("revision").hash(&mut hasher);
        row.get::<_, String>(1).expect("key").hash(&mut hasher);
        row.get::<_, i64>(2).expect("event").hash(&mut hasher);
        row.get::<_, i64>(3).expect("create revision").hash(&mut hasher);
        row.get::<_, Vec<u8>>(4).expect("value").hash(&mut hasher);
        rows += 1;
    }
    (rows, hasher.finish())
}

fn open(data_dir: &Path) -> rusqlite::Connection {
    let path = data_dir.join("server/db/state.db");
    rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}
