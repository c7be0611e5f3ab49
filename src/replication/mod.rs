//! The store's replication: the store always runs as a Raft group (openraft), a lone server being a
//! group of one voter, so adding servers needs no migration. Writes go through the log (forwarded to the
//! leader from a follower), committed entries are applied to every member's store in log order, current
//! reads wait on a read index (asked of the leader from a follower), and watches are served from each
//! member's own applied state. Servers talk over mutual TLS on the API port (`routes`, `network`).

mod admin;
mod batcher;
mod lifecycle;
mod log_bound;
mod log_store;
mod membership;
mod network;
mod pool;
mod recent_entries;
mod routes;
mod snapshot_wire;
mod state_machine;
mod types;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use admin::{admin_routes, MEMBERS_PATH};
pub use lifecycle::{refuse_if_removed, REMOVED_MARKER};
pub use membership::{Member, Removal};
pub use routes::routes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::store::{Command, Outcome, ReplicationStatus, Store, StoreError};
use network::{CallError, Peers, JOIN_PATH, READ_INDEX_PATH, REMOVE_PATH, WRITE_PATH};
use types::{LogId, NodeId, Raft};

/// How long a write or current read waits for a leader (an election) before failing as unavailable.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long the leader lets a write wait for its batch and the batch to be committed and applied:
/// less than a forward's deadline, so that a follower gets the leader's answer rather than a timeout of
/// its own.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(8);
/// The deadline of a forwarded write or read index.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long adding a server may take (it catches up, by snapshot if need be, before it votes).
const JOIN_TIMEOUT: Duration = Duration::from_secs(300);
/// The pause between attempts while there is no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What starting replication needs.
pub struct Settings {
    /// The store's directory (`raft.db`, `raft-id`, `raft-snapshots/` live here).
    pub dir: PathBuf,
    /// This server's address for its peers, `host:port` of its API.
    pub address: String,
    /// The TLS client configuration presenting this server's peer certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// Log entries between two snapshots.
    pub snapshot_entries: u64,
    /// Bytes of log entries after which a snapshot is taken sooner (see `log_bound`).
    pub snapshot_bytes: u64,
    pub timing: Timing,
}

/// Raft's clock, as etcd's `--heartbeat-interval` and `--election-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often the leader sends heartbeats, and how long it gives a follower to store entries.
    pub heartbeat: Duration,
    /// The longest a follower waits for a leader before calling an election (the shortest is half).
    pub election_timeout: Duration,
}

impl Timing {
    /// How long a leader may go without a quorum's acknowledgement before it no longer counts as one:
    /// two election timeouts, by when the others have elected another.
    fn quorum_silence_ms(&self) -> u64 {
        2 * self.election_timeout.as_millis() as u64
    }
}

/// A request to add a server (or to update a member's address).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JoinRequest {
    id: NodeId,
    address: String,
}

/// Why a leader-only request was not carried out.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The receiver is not the leader (nothing was done).
    #[error("not the leader")]
    NotLeader,
    /// The write may or may not take effect.
    #[error("{0}")]
    Indeterminate(String),
    #[error("{0}")]
    Failed(String),
}

/// The replication of one server's store.
pub struct Replication {
    id: NodeId,
    address: String,
    raft: Raft,
    peers: pool::Pool,
    /// Membership changes one at a time (Raft allows one in progress).
    membership_changes: tokio::sync::Mutex<()>,
    /// The store directory (`Settings::dir`): the log, the snapshots, a removed server's marker.
    store_dir: PathBuf,
    /// Gathers the writes this server takes as leader into batches, each committed as one log entry.
    batcher: batcher::Batcher,
    timing: Timing,
    /// The log's size in bytes, as last measured.
    log_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Replication {
    /// Starts this server's Raft node over `store` and routes the store's writes and current reads
    /// through it. A new server is not a member of any group until [`Replication::initialize_alone`]
    /// or [`Replication::join`].
    pub async fn start(store: &Store, settings: Settings) -> anyhow::Result<Arc<Replication>> {
        let id = node_id(&settings.dir)?;
        let (log, state_machine) = open_storage(store, &settings.dir).await?;
        let config = openraft::Config {
            cluster_name: "tug".into(),
            heartbeat_interval: settings.timing.heartbeat.as_millis() as u64,
            election_timeout_min: settings.timing.election_timeout.as_millis() as u64 / 2,
            election_timeout_max: settings.timing.election_timeout.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_entries),
            // A tenth of the interval stays for followers slightly behind; farther behind, a snapshot.
            max_in_snapshot_log_to_keep: settings.snapshot_entries / 10,
            install_snapshot_timeout: 60_000,
            ..Default::default()
        }
        .validate()?;
        let peers = Peers { id, tls: settings.tls.clone() };
        let raft = Raft::new(id, Arc::new(config), peers, log.clone(), state_machine).await?;
        let log_bytes = log_bound::keep_log_within(raft.clone(), log, settings.snapshot_bytes);
        let replication = Arc::new(Replication {
            id,
            address: settings.address,
            batcher: batcher::Batcher::start(raft.clone(), COMMIT_TIMEOUT),
            raft,
            peers: pool::Pool::new(settings.tls),
            membership_changes: Default::default(),
            store_dir: settings.dir,
            timing: settings.timing,
            log_bytes,
        });
        store.set_replicator(replication.clone());
        lifecycle::exit_when_stopped(&replication.raft);
        lifecycle::exit_when_removed(&replication.raft, id, replication.store_dir.clone());
        lifecycle::exit_when_removed_while_down(replication.clone());
        Ok(replication)
    }

    /// Whether this server belongs to a group (it has been initialized or has joined before).
    pub async fn is_member(&self) -> anyhow::Result<bool> {
        Ok(self.raft.is_initialized().await?)
    }

    /// Makes this server a group of one voter (the first server of a cluster, on its first start).
    pub async fn initialize_alone(&self) -> anyhow::Result<()> {
        let members = BTreeMap::from([(self.id, BasicNode::new(&self.address))]);
        self.raft.initialize(members).await.context("initializing the Raft group")?;
        Ok(())
    }

    /// Joins the group through the member at `via` (`host:port`): this server is added as a learner,
    /// catches up, and is promoted to voter; returns once the leader has done so.
    pub async fn join(&self, via: &str) -> anyhow::Result<()> {
        let request = JoinRequest { id: self.id, address: self.address.clone() };
        let answer: Result<(), Refusal> = self
            .peers
            .call(via, JOIN_PATH, &request, JOIN_TIMEOUT)
            .await
            .with_context(|| format!("asking {via} to add this server"))?;
        answer.with_context(|| format!("{via} did not add this server"))
    }

    /// At each start of a member: has the leader record this server's address if it changed (a new
    /// `--advertise-address`, another port), so the other servers find it again, and finish promoting it
    /// to voter if an earlier join was interrupted after adding it as a learner.
    pub async fn settle_membership(&self) -> anyhow::Result<()> {
        let (known, voter) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            let known = membership.get_node(&self.id).map(|node| node.addr.clone());
            (known, membership.voter_ids().any(|id| id == self.id))
        };
        if known.is_none() || (voter && known.as_deref() == Some(self.address.as_str())) {
            return Ok(());
        }
        let request = JoinRequest { id: self.id, address: self.address.clone() };
        self.add_server_via_leader(request).await?;
        tracing::info!(address = %self.address, "the cluster knows this server as a voter at its address");
        Ok(())
    }

    /// Waits until this server knows a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<()> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .context("no Raft leader elected")?;
        Ok(())
    }

    /// Waits until this server knows a leader as long as it takes, warning every `every` that it still
    /// waits (a member restarting: the other servers may come back much later, as after a power cut
    /// across a site); fails only if the node shuts down.
    pub async fn wait_for_leader_patiently(&self, every: Duration) -> anyhow::Result<()> {
        loop {
            match self.raft.wait(Some(every)).metrics(|m| m.current_leader.is_some(), "a leader").await {
                Ok(_) => return Ok(()),
                Err(openraft::metrics::WaitError::Timeout(..)) => {
                    tracing::warn!("waiting for a quorum of the cluster's servers to elect a leader")
                }
                Err(shutting_down) => return Err(shutting_down.into()),
            }
        }
    }

    /// Takes a snapshot of everything applied and purges the log behind it, so that a server joining
    /// later starts from the snapshot (after a cluster reset, the log no longer holds the store's past).
    pub async fn snapshot_and_purge(&self) -> anyhow::Result<()> {
        let timeout = Some(Duration::from_secs(300));
        let last_log_index = self.raft.metrics().borrow().last_log_index;
        let metrics = self.raft.wait(timeout).applied_index_at_least(last_log_index, "the log applied").await?;
        let applied = metrics.last_applied.context("nothing applied yet")?;
        self.raft.trigger().snapshot().await?;
        let covers = |m: &types::RaftMetrics| m.snapshot.is_some_and(|s| s.index >= applied.index);
        let metrics = self.raft.wait(timeout).metrics(covers, "a snapshot of everything applied").await?;
        let snapshot = metrics.snapshot.context("no snapshot")?;
        self.raft.trigger().purge_log(snapshot.index).await?;
        let purged = |m: &types::RaftMetrics| m.purged.is_some_and(|p| p.index >= snapshot.index);
        self.raft.wait(timeout).metrics(purged, "the log purged behind the snapshot").await?;
        Ok(())
    }

    /// Whether this server leads the group.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// This server's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }

    /// On the leader: commits a write in a batch with others and returns its outcome once applied,
    /// within [`COMMIT_TIMEOUT`] (queued and committed).
    async fn write_as_leader(&self, command: Command) -> Result<Outcome, Refusal> {
        self.batcher.write(command).await
    }

    /// On the leader: the read index (the log id a current read must have seen applied).
    async fn read_index_as_leader(&self) -> Result<Option<LogId>, Refusal> {
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _applied)) => Ok(read_log_id),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Err(Refusal::NotLeader),
            Err(other) => Err(Refusal::Failed(other.to_string())),
        }
    }

    /// Adds a server (or records a member's new address) through the leader, from any member.
    async fn add_server_via_leader(&self, request: JoinRequest) -> Result<(), Refusal> {
        let added = self.on_leader(JOIN_PATH, JOIN_TIMEOUT, &request, || self.add_server(request.clone())).await;
        added.map_err(|e| Refusal::Failed(e.to_string()))
    }

    /// Removes member `id` through the leader, from any member.
    pub async fn remove_server_via_leader(&self, id: NodeId) -> Result<Removal, StoreError> {
        self.on_leader(REMOVE_PATH, FORWARD_TIMEOUT, &id, || self.remove_server(id)).await
    }

    /// Runs `local` if this server leads, else sends `request` to `path` on the leader; retries while
    /// no leader is known or the one asked has just lost leadership, up to [`LEADER_WAIT`].
    async fn on_leader<Req, T, F, Fut>(
        &self,
        path: &str,
        timeout: Duration,
        request: &Req,
        local: F,
    ) -> Result<T, StoreError>
    where
        Req: Serialize,
        T: serde::de::DeserializeOwned,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Refusal>>,
    {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let leader = self.raft.current_leader().await;
            let answer = match leader {
                Some(id) if id == self.id => local().await,
                Some(id) => match self.member_address(id) {
                    Some(address) => match self.peers.call(&address, path, request, timeout).await {
                        Ok(answer) => answer,
                        // Not sent: the leader is gone, the next one is worth waiting for.
                        Err(CallError::Connect { .. }) => Err(Refusal::NotLeader),
                        // Sent: whether it took effect is unknown.
                        Err(e) => return Err(StoreError::Indeterminate(format!("the leader: {e}"))),
                    },
                    None => Err(Refusal::NotLeader),
                },
                None => Err(Refusal::NotLeader),
            };
            match answer {
                Ok(value) => return Ok(value),
                Err(Refusal::Failed(reason)) => return Err(StoreError::Unavailable(reason)),
                Err(Refusal::Indeterminate(reason)) => return Err(StoreError::Indeterminate(reason)),
                Err(Refusal::NotLeader) if Instant::now() >= deadline => {
                    return Err(StoreError::Unavailable(format!("no Raft leader within {LEADER_WAIT:?}")));
                }
                Err(Refusal::NotLeader) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }

    /// The address of member `id`, from the membership this server knows.
    fn member_address(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.membership_config.membership().get_node(&id).map(|node| node.addr.clone())
    }
}

#[async_trait::async_trait]
impl crate::store::Replicator for Replication {
    async fn propose(&self, command: Command) -> Result<Outcome, StoreError> {
        self.on_leader(WRITE_PATH, FORWARD_TIMEOUT, &command, || self.write_as_leader(command.clone())).await
    }

    async fn read_barrier(&self) -> Result<(), StoreError> {
        let read_index = self.on_leader(READ_INDEX_PATH, FORWARD_TIMEOUT, &(), || self.read_index_as_leader()).await?;
        self.raft
            .wait(Some(FORWARD_TIMEOUT))
            .applied_index_at_least(read_index.map(|id| id.index), "the read index")
            .await
            .map_err(|e| StoreError::Unavailable(format!("applying up to the read index: {e}")))?;
        Ok(())
    }

    fn status(&self) -> ReplicationStatus {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters = membership.voter_ids().count();
        let is_leader = metrics.current_leader == Some(self.id);
        // A leader cut off from its quorum still calls itself leader: it counts only while a quorum
        // acknowledged it recently.
        let leader_heard =
            !is_leader || metrics.millis_since_quorum_ack.is_none_or(|ms| ms < self.timing.quorum_silence_ms());
        let (proposed_entries, proposed_writes) = self.batcher.proposed();
        ReplicationStatus {
            has_leader: metrics.current_leader.is_some() && leader_heard,
            is_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map_or(0, |id| id.index),
            voters,
            learners: membership.nodes().count().saturating_sub(voters),
            proposed_entries,
            proposed_writes,
            log_bytes: self.log_bytes.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Applies to `store` every entry the Raft log in `dir` holds as committed and the store has not
/// applied (as a start does first), without starting a node: for `--cluster-reset`, which forgets the
/// log, while the store's newest commits may exist only there (they are not fsynced once replicated).
pub async fn apply_committed_log(store: &Store, dir: &Path) -> anyhow::Result<()> {
    if !dir.join("raft.db").exists() {
        return Ok(());
    }
    let (mut log, mut state_machine) = open_storage(store, dir).await?;
    openraft::storage::StorageHelper::new(&mut log, &mut state_machine)
        .get_initial_state()
        .await
        .context("applying the Raft log's committed entries")?;
    Ok(())
}

/// The Raft log (`raft.db`) and the state machine over `store` (its snapshots in `raft-snapshots/`)
/// in the store directory `dir`.
async fn open_storage(store: &Store, dir: &Path) -> anyhow::Result<(log_store::LogStore, state_machine::StateMachine)> {
    let log = log_store::LogStore::open(&dir.join("raft.db")).context("opening the Raft log")?;
    let state_machine = state_machine::StateMachine::new(store.clone(), snapshots_dir(dir)).await?;
    Ok((log, state_machine))
}

/// Where the state machine keeps its snapshots (and receives the leader's).
fn snapshots_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("raft-snapshots")
}

/// This server's node id: random on first start, kept in `<dir>/raft-id`.
fn node_id(dir: &Path) -> anyhow::Result<NodeId> {
    let path = dir.join("raft-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().with_context(|| format!("{} is not a node id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a node id: {e}"))?;
            // Non-zero and below 2^63, so it reads back the same everywhere.
            let id = (u64::from_le_bytes(bytes) >> 1).max(1);
            crate::fsutil::write_atomic(&path, format!("{id}\n").as_bytes(), 0o600)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
