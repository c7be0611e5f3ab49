//! The replicated state machine: committed entries applied to the MVCC store in log order (each write
//! records the applied log id and membership in its own transaction, so a restart resumes right after
//! it), and snapshots as consistent SQLite copies of the store kept in `<db>/raft-snapshots/` (only the
//! newest; the directory is this module's alone).

// openraft's storage traits fix the error type, StorageError, which is large.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use super::types::{decode, encode, Entry, IoError, LogId, SnapshotFile, StorageError, StoredMembership, TypeConfig};
use crate::store::{Outcome, Store};

/// What the store records of the log with each write.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// The state machine over the store.
pub struct StateMachine {
    store: Store,
    snapshots: PathBuf,
    applied: AppliedState,
    /// Held while snapshot files are made, replaced or removed: openraft builds snapshots in a task of
    /// their own, which may overlap an install.
    files: Arc<tokio::sync::Mutex<()>>,
}

const SNAPSHOT_PREFIX: &str = "snapshot-";
const BUILDING_PREFIX: &str = "building-";

/// A fresh name for a snapshot being received.
pub fn receiving_path(dir: &Path) -> PathBuf {
    dir.join(format!("receiving-{}.db", uuid::Uuid::new_v4()))
}

impl StateMachine {
    /// The state machine over `store`, keeping snapshots in `snapshots`.
    pub async fn new(store: Store, snapshots: PathBuf) -> Result<StateMachine, StorageError> {
        std::fs::create_dir_all(&snapshots).map_err(|e| IoError::write_snapshot(None, &e))?;
        let applied = match store.replicated_state().await.map_err(|e| IoError::read_state_machine(&e))? {
            Some(bytes) => decode(&bytes).map_err(|e| IoError::read_state_machine(&e))?,
            None => AppliedState::default(),
        };
        let current = current_snapshot(&snapshots).map(|(_, path)| path);
        remove_all_but(&snapshots, current.as_deref());
        Ok(StateMachine { store, snapshots, applied, files: Default::default() })
    }
}

/// The snapshot file of `meta`'s id.
fn snapshot_path(dir: &Path, snapshot_id: &str) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{snapshot_id}.db"))
}

/// The applied state recorded inside a snapshot file.
fn applied_in(path: &Path) -> Result<AppliedState, StorageError> {
    let read = || -> Result<Option<Vec<u8>>, rusqlite::Error> {
        let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.query_row("SELECT state FROM raft_applied WHERE id = 0", [], |r| r.get(0)).optional()
    };
    match read().map_err(|e| IoError::read_snapshot(None, &e))? {
        Some(bytes) => decode(&bytes).map_err(|e| IoError::read_snapshot(None, &e).into()),
        None => Ok(AppliedState::default()),
    }
}

fn meta_of(applied: AppliedState, snapshot_id: String) -> SnapshotMeta<u64, openraft::BasicNode> {
    SnapshotMeta { last_log_id: applied.last_applied, last_membership: applied.membership, snapshot_id }
}

/// Removes every file in `dir` but `keep`: older snapshots and copies left half made (at start, when
/// nothing is in flight, also snapshots half received).
fn remove_all_but(dir: &Path, keep: Option<&Path>) {
    remove_matching(dir, keep, |_| true)
}

/// Removes the snapshots and copies being built in `dir` but `keep` (not what is being received).
fn remove_others(dir: &Path, keep: &Path) {
    remove_matching(dir, Some(keep), |name| name.starts_with(SNAPSHOT_PREFIX) || name.starts_with(BUILDING_PREFIX))
}

fn remove_matching(dir: &Path, keep: Option<&Path>, matches: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if Some(path.as_path()) != keep && name.to_str().is_some_and(&matches) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The log position a snapshot id (`<term>-<node>-<index>`) names, to order snapshots by.
fn position(snapshot_id: &str) -> Option<(u64, u64)> {
    let mut parts = snapshot_id.split('-').map(|part| part.parse::<u64>().ok());
    let (term, _node, index) = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some((index, term))
}

/// The snapshot file in `dir` furthest along the log, with its id.
fn current_snapshot(dir: &Path) -> Option<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let id = name.strip_prefix(SNAPSHOT_PREFIX)?.strip_suffix(".db")?.to_string();
            Some((position(&id)?, id, entry.path()))
        })
        .max_by_key(|(position, _, _)| *position)
        .map(|(_, id, path)| (id, path))
}

/// Builds snapshots by copying the store.
pub struct SnapshotBuilder {
    store: Store,
    snapshots: PathBuf,
    files: Arc<tokio::sync::Mutex<()>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let _files = self.files.lock().await;
        let building = self.snapshots.join(format!("{BUILDING_PREFIX}{}.db", uuid::Uuid::new_v4()));
        self.store.copy_to(&building).await.map_err(|e| IoError::write_snapshot(None, &e))?;
        let applied = applied_in(&building)?;
        let id = match &applied.last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id.term, log_id.leader_id.node_id, log_id.index),
            None => "0-0-0".to_string(),
        };
        let path = snapshot_path(&self.snapshots, &id);
        std::fs::rename(&building, &path).map_err(|e| IoError::write_snapshot(None, &e))?;
        remove_others(&self.snapshots, &path);
        tracing::info!(snapshot = %id, "built a store snapshot");
        Ok(Snapshot { meta: meta_of(applied, id), snapshot: Box::new(SnapshotFile { path }) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // Everything is queued before anything is awaited: the applier takes the whole run into as few
        // transactions (and fsyncs) as it can, in order. Each entry's writes apply in one transaction,
        // with the log id that says they did.
        let mut pending = Vec::new();
        for entry in entries {
            let commands = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(commands) => commands,
                EntryPayload::Membership(membership) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            self.applied.last_applied = Some(entry.log_id);
            let state = encode(&self.applied).map_err(|e| IoError::apply(entry.log_id, &e))?;
            let reply =
                self.store.submit(commands, Some(state.into())).await.map_err(|e| IoError::apply(entry.log_id, &e))?;
            pending.push((entry.log_id, reply));
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for (log_id, reply) in pending {
            let outcome =
                reply.await.map_err(|e| IoError::apply(log_id, &e))?.map_err(|e| IoError::apply(log_id, &e))?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone(), snapshots: self.snapshots.clone(), files: self.files.clone() }
    }

    /// Only for chunked transfer, which tug does not use (snapshots arrive whole, see `routes`).
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        Ok(Box::new(SnapshotFile { path: receiving_path(&self.snapshots) }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let signature = Some(meta.signature());
        let refused = |reason: String| IoError::read_snapshot(signature.clone(), &std::io::Error::other(reason));
        if position(&meta.snapshot_id).is_none() {
            return Err(refused(format!("{:?} is not a snapshot id", meta.snapshot_id)).into());
        }
        let received = applied_in(&snapshot.path)?;
        if received.last_applied != meta.last_log_id {
            let reason =
                format!("the snapshot holds {:?}, its metadata says {:?}", received.last_applied, meta.last_log_id);
            return Err(refused(reason).into());
        }
        let _files = self.files.lock().await;
        let path = snapshot_path(&self.snapshots, &meta.snapshot_id);
        if snapshot.path != path {
            std::fs::rename(&snapshot.path, &path).map_err(|e| IoError::read_snapshot(signature.clone(), &e))?;
        }
        self.store.restore_from(&path).await.map_err(|e| IoError::read_snapshot(signature.clone(), &e))?;
        self.applied = received;
        remove_others(&self.snapshots, &path);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a store snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some((id, path)) = current_snapshot(&self.snapshots) else { return Ok(None) };
        let applied = applied_in(&path)?;
        Ok(Some(Snapshot { meta: meta_of(applied, id), snapshot: Box::new(SnapshotFile { path }) }))
    }
}
