//! The Raft type configuration: an entry carries a batch of store commands (applied together), its
//! response their outcomes, nodes are servers addressed by their API endpoint, snapshots are SQLite files.

use std::path::PathBuf;

use crate::store::{Command, Outcome};

openraft::declare_raft_types!(
    /// tug's Raft types.
    pub TypeConfig:
        D = Vec<Command>,
        R = Vec<Outcome>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;

/// A snapshot: a self-contained copy of the store's SQLite file.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// Encodes a value for the log or the wire.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes what [`encode`] wrote, all of it (bytes left over mean another format, such as a log entry
/// written by another version).
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes(bytes)? {
        (value, []) => Ok(value),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// A storage I/O failure, as openraft reports them.
pub type IoError = openraft::StorageIOError<NodeId>;
