//! Write commands and their deterministic application to one SQLite transaction. Nothing here reads a
//! clock or randomness: the same commands applied in the same order give the same state, which is what
//! lets them go through a Raft log unchanged.

use bytes::Bytes;
use rusqlite::{OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::index::{SharedIndex, Version};
use super::Record;

/// A write to the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Command {
    /// Create `key`; refused if it exists.
    Create { key: String, value: Vec<u8> },
    /// Replace `key`'s value; refused unless its mod revision is `expected_revision`.
    Update { key: String, value: Vec<u8>, expected_revision: i64 },
    /// Delete `key`; refused unless its mod revision is `expected_revision`.
    Delete { key: String, expected_revision: i64 },
    /// Forget history at and below `revision`, keeping each live key's latest version.
    Compact { revision: i64 },
}

/// Why a command was refused; the state is unchanged.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandError {
    #[error("key already exists")]
    AlreadyExists { mod_revision: i64 },
    #[error("key not found")]
    NotFound,
    #[error("revision conflict")]
    Conflict { current: Record },
    #[error("cannot compact to revision {requested}: {reason}")]
    BadCompaction { requested: i64, reason: String },
}

/// What one applied command changed, for the watch hub.
pub(super) struct Change {
    pub record: Record,
    pub event: u8,
    /// The value before the change (None for a create).
    pub prev: Option<Bytes>,
}

pub(super) const CREATED: u8 = 0;
pub(super) const UPDATED: u8 = 1;
pub(super) const DELETED: u8 = 2;

/// Applies `command` inside `tx`, using `revision` as the next revision if it writes, and records the
/// new version in `index` (the applier is its only writer, so lookups take the read lock and only the
/// push takes the write lock, briefly). Returns the change (None for compaction) or the refusal.
/// Compaction deletes its rows here; the caller prunes the index once the transaction has committed.
pub(super) fn apply(
    tx: &Transaction<'_>,
    index: &SharedIndex,
    command: Command,
    revision: i64,
) -> rusqlite::Result<Result<Option<Change>, CommandError>> {
    match command {
        Command::Create { key, value } => {
            if let Some(existing) = index.read().latest(&key) {
                return Ok(Err(CommandError::AlreadyExists { mod_revision: existing.revision }));
            }
            let record = Record { key, value: value.into(), create_revision: revision, mod_revision: revision };
            write(tx, index, record, CREATED, None).map(|c| Ok(Some(c)))
        }
        Command::Update { key, value, expected_revision } => match current(tx, index, &key)? {
            None => Ok(Err(CommandError::NotFound)),
            Some(current) if current.mod_revision != expected_revision => Ok(Err(CommandError::Conflict { current })),
            Some(current) => {
                let create_revision = current.create_revision;
                let record = Record { key, value: value.into(), create_revision, mod_revision: revision };
                write(tx, index, record, UPDATED, Some(current.value)).map(|c| Ok(Some(c)))
            }
        },
        Command::Delete { key, expected_revision } => match current(tx, index, &key)? {
            None => Ok(Err(CommandError::NotFound)),
            Some(current) if current.mod_revision != expected_revision => Ok(Err(CommandError::Conflict { current })),
            Some(current) => {
                insert_history(tx, revision, &key, DELETED, current.create_revision, &current.value)?;
                let tombstone = Version { revision, create_revision: current.create_revision, deleted: true };
                index.write().push(&key, tombstone);
                let prev = Some(current.value.clone());
                let record = Record { mod_revision: revision, ..current };
                Ok(Ok(Some(Change { record, event: DELETED, prev })))
            }
        },
        Command::Compact { revision: target } => compact(tx, index, target, revision).map(|r| r.map(|()| None)),
    }
}

/// Records the replication layer's applied state (opaque here) in the transaction it covers.
pub(super) fn record_replicated_state(tx: &Transaction<'_>, state: &[u8]) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO raft_applied (id, state) VALUES (0, ?1)")?.execute([state])?;
    Ok(())
}

/// The value stored at `revision`.
pub(super) fn value_at(conn: &rusqlite::Connection, revision: i64) -> rusqlite::Result<Option<Bytes>> {
    conn.prepare_cached("SELECT value FROM history WHERE revision = ?1")?
        .query_row([revision], |row| row.get::<_, Vec<u8>>(0).map(Bytes::from))
        .optional()
}

fn current(tx: &Transaction<'_>, index: &SharedIndex, key: &str) -> rusqlite::Result<Option<Record>> {
    let Some(version) = index.read().latest(key) else { return Ok(None) };
    let value = value_at(tx, version.revision)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok(Some(Record {
        key: key.to_string(),
        value,
        create_revision: version.create_revision,
        mod_revision: version.revision,
    }))
}

/// Stores `record` as a new live version (created or updated).
fn write(
    tx: &Transaction<'_>,
    index: &SharedIndex,
    record: Record,
    event: u8,
    prev: Option<Bytes>,
) -> rusqlite::Result<Change> {
    let (revision, create_revision) = (record.mod_revision, record.create_revision);
    insert_history(tx, revision, &record.key, event, create_revision, &record.value)?;
    index.write().push(&record.key, Version { revision, create_revision, deleted: false });
    Ok(Change { record, event, prev })
}

fn insert_history(
    tx: &Transaction<'_>,
    revision: i64,
    key: &str,
    event: u8,
    create_revision: i64,
    value: &[u8],
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO history (revision, key, event, create_revision, value) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![revision, key, event, create_revision, value])?;
    Ok(())
}

/// Drops history at or below `target` except each live key's newest version there, and all tombstones.
fn compact(
    tx: &Transaction<'_>,
    index: &SharedIndex,
    target: i64,
    next_revision: i64,
) -> rusqlite::Result<Result<(), CommandError>> {
    let compacted: i64 =
        tx.prepare_cached("SELECT value FROM counters WHERE name = 'compacted'")?.query_row([], |r| r.get(0))?;
    if target <= compacted {
        return Ok(Err(CommandError::BadCompaction { requested: target, reason: "already compacted".into() }));
    }
    if target >= next_revision {
        return Ok(Err(CommandError::BadCompaction {
            requested: target,
            reason: "newer than the current revision".into(),
        }));
    }
    let mut delete = tx.prepare_cached("DELETE FROM history WHERE revision = ?1")?;
    let victims = index.read().compaction_victims(target);
    for victim in victims {
        delete.execute([victim])?;
    }
    tx.prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'compacted'")?.execute([target])?;
    // Raise the revision floor: compaction may have removed the newest row (a deletion's tombstone).
    tx.prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'revision'")?.execute([next_revision - 1])?;
    Ok(Ok(()))
}
