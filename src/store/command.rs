//! Write commands and their deterministic application to one SQLite transaction. Nothing here reads a
//! clock or randomness: the same commands applied in the same order give the same state, which is what
//! lets them go through a Raft log unchanged.

use bytes::Bytes;
use rusqlite::{OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("key already exists")]
    AlreadyExists { mod_revision: i64 },
    #[error("key not found")]
    NotFound,
    #[error("revision conflict")]
    Conflict { current: Record },
    #[error("cannot compact to revision {requested}: {reason}")]
    BadCompaction { requested: i64, reason: &'static str },
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

/// Applies `command` inside `tx`, using `revision` as the next revision if it writes.
/// Returns the change (None for compaction) or the refusal.
pub(super) fn apply(
    tx: &Transaction<'_>,
    command: Command,
    revision: i64,
) -> rusqlite::Result<Result<Option<Change>, CommandError>> {
    match command {
        Command::Create { key, value } => {
            // Existence only: reading the stored value here would cost a blob read per create.
            let existing: Option<i64> = tx
                .prepare_cached("SELECT mod_revision FROM objects WHERE key = ?1")?
                .query_row([&key], |row| row.get(0))
                .optional()?;
            if let Some(mod_revision) = existing {
                return Ok(Err(CommandError::AlreadyExists { mod_revision }));
            }
            write(tx, key, value, revision, revision, CREATED, None).map(|c| Ok(Some(c)))
        }
        Command::Update { key, value, expected_revision } => match current(tx, &key)? {
            None => Ok(Err(CommandError::NotFound)),
            Some(current) if current.mod_revision != expected_revision => Ok(Err(CommandError::Conflict { current })),
            Some(current) => {
                let (create_revision, prev) = (current.create_revision, Some(current.value));
                write(tx, key, value, create_revision, revision, UPDATED, prev).map(|c| Ok(Some(c)))
            }
        },
        Command::Delete { key, expected_revision } => match current(tx, &key)? {
            None => Ok(Err(CommandError::NotFound)),
            Some(current) if current.mod_revision != expected_revision => Ok(Err(CommandError::Conflict { current })),
            Some(current) => {
                tx.prepare_cached("DELETE FROM objects WHERE key = ?1")?.execute([&key])?;
                insert_history(tx, revision, &key, DELETED, current.create_revision, &current.value)?;
                let prev = Some(current.value.clone());
                let record = Record { mod_revision: revision, ..current };
                Ok(Ok(Some(Change { record, event: DELETED, prev })))
            }
        },
        Command::Compact { revision: target } => compact(tx, target, revision).map(|r| r.map(|()| None)),
    }
}

fn current(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<Record>> {
    tx.prepare_cached(
        "SELECT h.value, o.create_revision, o.mod_revision FROM objects o
         JOIN history h ON h.revision = o.mod_revision WHERE o.key = ?1",
    )?
    .query_row([key], |row| {
        Ok(Record {
            key: key.to_string(),
            value: Bytes::from(row.get::<_, Vec<u8>>(0)?),
            create_revision: row.get(1)?,
            mod_revision: row.get(2)?,
        })
    })
    .optional()
}

fn write(
    tx: &Transaction<'_>,
    key: String,
    value: Vec<u8>,
    create_revision: i64,
    revision: i64,
    event: u8,
    prev: Option<Bytes>,
) -> rusqlite::Result<Change> {
    tx.prepare_cached(
        "INSERT INTO objects (key, create_revision, mod_revision) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET mod_revision = excluded.mod_revision",
    )?
    .execute(rusqlite::params![key, create_revision, revision])?;
    insert_history(tx, revision, &key, event, create_revision, &value)?;
    let record = Record { key, value: Bytes::from(value), create_revision, mod_revision: revision };
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
fn compact(tx: &Transaction<'_>, target: i64, next_revision: i64) -> rusqlite::Result<Result<(), CommandError>> {
    let compacted: i64 =
        tx.prepare_cached("SELECT value FROM counters WHERE name = 'compacted'")?.query_row([], |r| r.get(0))?;
    if target <= compacted {
        return Ok(Err(CommandError::BadCompaction { requested: target, reason: "already compacted" }));
    }
    if target >= next_revision {
        return Ok(Err(CommandError::BadCompaction { requested: target, reason: "newer than the current revision" }));
    }
    tx.prepare_cached(
        "DELETE FROM history WHERE revision <= ?1 AND (event = 2 OR EXISTS (
             SELECT 1 FROM history newer WHERE newer.key = history.key
             AND newer.revision > history.revision AND newer.revision <= ?1))",
    )?
    .execute([target])?;
    tx.prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'compacted'")?.execute([target])?;
    // Raise the revision floor: compaction may have removed the newest row (a deletion's tombstone).
    tx.prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'revision'")?.execute([next_revision - 1])?;
    Ok(Ok(()))
}
