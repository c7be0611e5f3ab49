//! Builds the log store and state machine over a real store in a temporary directory, for openraft's
//! storage conformance suite.

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::types::{StorageError, TypeConfig};
use crate::store::Store;

#[derive(Default)]
pub struct StoreBuilder;

impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for StoreBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state.db")).expect("store");
        let log = LogStore::open(&dir.path().join("raft.db")).expect("log");
        let state_machine = StateMachine::new(store, dir.path().join("snapshots")).await?;
        Ok((dir, log, state_machine))
    }
}
