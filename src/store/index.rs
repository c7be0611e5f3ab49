//! The key index, in memory as etcd's: for every key, the revisions of its versions still in `history`
//! (oldest first, tombstones included). SQLite then only appends each change to `history` by revision —
//! no B-tree page at a random place per write — and every read resolves a key at a revision here before
//! fetching values by revision. Rebuilt from `history` at start; compaction prunes it in step with the
//! rows it deletes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rusqlite::Connection;

/// One version of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Version {
    pub revision: i64,
    pub create_revision: i64,
    pub deleted: bool,
}

/// Every key's retained versions.
#[derive(Debug, Default)]
pub(super) struct KeyIndex {
    keys: BTreeMap<String, Vec<Version>>,
    /// The revision history was last compacted to: reads below it cannot be answered.
    compacted: i64,
}

impl KeyIndex {
    /// Reads the index from `history` (values are not read: they are the last column).
    pub fn load(conn: &Connection, compacted: i64) -> rusqlite::Result<KeyIndex> {
        let mut index = KeyIndex { keys: BTreeMap::new(), compacted };
        let mut stmt = conn.prepare("SELECT key, revision, create_revision, event FROM history ORDER BY revision")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let version =
                Version { revision: row.get(1)?, create_revision: row.get(2)?, deleted: row.get::<_, u8>(3)? == 2 };
            index.push(row.get_ref(0)?.as_str()?, version);
        }
        Ok(index)
    }

    /// Records a new version; revisions only grow.
    pub fn push(&mut self, key: &str, version: Version) {
        match self.keys.get_mut(key) {
            Some(versions) => versions.push(version),
            None => {
                self.keys.insert(key.to_string(), vec![version]);
            }
        }
    }

    pub fn compacted(&self) -> i64 {
        self.compacted
    }

    /// Whether reads at `revision` can be answered; if not, the compacted revision.
    pub fn readable_at(&self, revision: i64) -> Result<(), i64> {
        if revision < self.compacted {
            Err(self.compacted)
        } else {
            Ok(())
        }
    }

    /// The key's newest version if it is live.
    pub fn latest(&self, key: &str) -> Option<Version> {
        self.keys.get(key).and_then(|v| v.last()).copied().filter(|v| !v.deleted)
    }

    /// The key's version at `revision` (its newest at or below it) if it is live.
    pub fn at(&self, key: &str, revision: i64) -> Option<Version> {
        self.keys.get(key).and_then(|versions| newest_at(versions, revision)).filter(|v| !v.deleted)
    }

    /// The version the key had just before `revision`, live or not.
    pub fn before(&self, key: &str, revision: i64) -> Option<Version> {
        self.keys.get(key).and_then(|versions| newest_at(versions, revision - 1))
    }

    /// The live keys in `[start, end)` at `revision`, in key order, at most `limit` of them (0 = all).
    pub fn range_at(&self, start: &str, end: &str, revision: i64, limit: usize) -> Vec<(String, Version)> {
        if start >= end {
            return Vec::new();
        }
        let live = self
            .keys
            .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
            .filter_map(|(key, versions)| Some((key.clone(), newest_at(versions, revision).filter(|v| !v.deleted)?)));
        if limit == 0 {
            live.collect()
        } else {
            live.take(limit).collect()
        }
    }

    /// The revisions compaction to `target` removes: every version superseded at or below `target`,
    /// and tombstones at or below it. Each live key keeps its newest version at or below `target`.
    pub fn compaction_victims(&self, target: i64) -> Vec<i64> {
        let mut victims = Vec::new();
        for versions in self.keys.values() {
            let old = versions.partition_point(|v| v.revision <= target);
            let Some(newest_old) = old.checked_sub(1).map(|i| versions[i]) else { continue };
            victims.extend(versions[..old - 1].iter().map(|v| v.revision));
            if newest_old.deleted {
                victims.push(newest_old.revision);
            }
        }
        victims
    }

    /// Forgets what [`compaction_victims`](Self::compaction_victims) returned for `target`.
    pub fn compact(&mut self, target: i64) {
        self.compacted = target;
        self.keys.retain(|_, versions| {
            let old = versions.partition_point(|v| v.revision <= target);
            if old > 0 {
                let keep_newest_old = !versions[old - 1].deleted;
                versions.drain(..if keep_newest_old { old - 1 } else { old });
            }
            !versions.is_empty()
        });
    }

    /// Drops every version newer than `revision` (a transaction that failed to commit).
    pub fn truncate_after(&mut self, revision: i64) {
        self.keys.retain(|_, versions| {
            versions.truncate(versions.partition_point(|v| v.revision <= revision));
            !versions.is_empty()
        });
    }
}

/// The index shared by the applier (the only writer) and readers.
#[derive(Clone)]
pub(super) struct SharedIndex(Arc<RwLock<KeyIndex>>);

impl SharedIndex {
    pub fn new(index: KeyIndex) -> SharedIndex {
        SharedIndex(Arc::new(RwLock::new(index)))
    }

    /// The index for reading. Every change is a whole push or prune, so a panic elsewhere cannot leave
    /// it half-written and a poisoned lock is still sound to use.
    pub fn read(&self) -> RwLockReadGuard<'_, KeyIndex> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, KeyIndex> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn newest_at(versions: &[Version], revision: i64) -> Option<Version> {
    versions.partition_point(|v| v.revision <= revision).checked_sub(1).map(|i| versions[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(revision: i64, create_revision: i64, deleted: bool) -> Version {
        Version { revision, create_revision, deleted }
    }

    /// a: created 1, updated 3, deleted 5, created again 7. b: created 2, updated 4.
    fn sample() -> KeyIndex {
        let mut index = KeyIndex::default();
        for (key, v) in [
            ("a", version(1, 1, false)),
            ("b", version(2, 2, false)),
            ("a", version(3, 1, false)),
            ("b", version(4, 2, false)),
            ("a", version(5, 1, true)),
            ("a", version(7, 7, false)),
        ] {
            index.push(key, v);
        }
        index
    }

    #[test]
    fn resolves_keys_at_any_retained_revision() {
        let index = sample();
        assert_eq!(index.latest("a"), Some(version(7, 7, false)));
        assert_eq!(index.at("a", 4), Some(version(3, 1, false)));
        assert_eq!(index.at("a", 6), None, "deleted at 5");
        assert_eq!(index.at("b", 1), None, "not yet created");
        assert_eq!(index.before("a", 7), Some(version(5, 1, true)));
        let keys = |rev, limit| {
            index.range_at("a", "c", rev, limit).into_iter().map(|(k, v)| (k, v.revision)).collect::<Vec<_>>()
        };
        assert_eq!(keys(6, 0), vec![("b".to_string(), 4)]);
        assert_eq!(keys(7, 1), vec![("a".to_string(), 7)]);
        assert_eq!(index.range_at("c", "a", 7, 0), vec![], "an empty range, not a panic");
    }

    #[test]
    fn compaction_keeps_each_live_keys_newest_old_version() {
        let mut index = sample();
        let mut victims = index.compaction_victims(4);
        victims.sort_unstable();
        assert_eq!(victims, vec![1, 2], "a@3 and b@4 stay: they are the versions read at 4");
        index.compact(4);
        assert_eq!((index.readable_at(3), index.readable_at(4)), (Err(4), Ok(())));
        assert_eq!(index.at("a", 4), Some(version(3, 1, false)));
        assert_eq!(index.at("b", 4), Some(version(4, 2, false)));
        assert_eq!(index.compaction_victims(6), vec![3, 5], "a's tombstone goes with what it deleted");
        index.compact(6);
        assert_eq!(index.at("a", 6), None);
        assert_eq!(index.latest("a"), Some(version(7, 7, false)));
    }

    #[test]
    fn a_failed_transaction_is_forgotten() {
        let mut index = sample();
        index.truncate_after(4);
        assert_eq!(index.latest("a"), Some(version(3, 1, false)));
        index.truncate_after(0);
        assert_eq!(index.range_at("", "z", 10, 0), vec![]);
    }
}
