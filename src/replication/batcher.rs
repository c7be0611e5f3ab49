//! Group commit above Raft, on the leader: writes that arrive while earlier ones are in flight are
//! gathered into one log entry, so that one log fsync on each member, one replication round and one store
//! transaction serve them all (openraft appends and flushes each entry before taking the next, so the
//! store's own group commit alone sees one write at a time). A batch is proposed as soon as fewer than
//! [`MAX_IN_FLIGHT`] batches are waiting for their outcome; under load the queue fills meanwhile.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResult;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::types::{Raft, TypeConfig};
use super::Refusal;
use crate::store::{Command, Outcome};

/// Batches proposed and not yet applied at any time: one being appended while the one before it
/// replicates and applies.
const MAX_IN_FLIGHT: usize = 2;
/// The most writes one entry carries.
const MAX_BATCH_WRITES: usize = 512;
/// Beyond this many bytes of values, a batch takes no more writes (one larger write goes alone), so
/// that an entry stays far below the largest replication message.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A write waiting for its batch.
struct Waiting {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, Refusal>>,
}

/// The leader's write queue.
pub struct Batcher {
    queue: mpsc::UnboundedSender<Waiting>,
    proposed: Arc<Proposed>,
}

/// What this server proposed as leader, for /metrics.
#[derive(Default)]
struct Proposed {
    entries: AtomicU64,
    writes: AtomicU64,
}

impl Batcher {
    /// Starts batching writes into `raft`, each batch given up as indeterminate after `timeout`.
    pub fn start(raft: Raft, timeout: Duration) -> Batcher {
        let (queue, waiting) = mpsc::unbounded_channel();
        let proposed = Arc::new(Proposed::default());
        tokio::spawn(propose_batches(raft, waiting, timeout, proposed.clone()));
        Batcher { queue, proposed }
    }

    /// The log entries and the writes in them this server has proposed as leader.
    pub fn proposed(&self) -> (u64, u64) {
        (self.proposed.entries.load(Ordering::Relaxed), self.proposed.writes.load(Ordering::Relaxed))
    }

    /// Commits `command` in a batch and returns its outcome once applied here.
    pub async fn write(&self, command: Command) -> Result<Outcome, Refusal> {
        let (reply, outcome) = oneshot::channel();
        self.queue.send(Waiting { command, reply }).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Refusal {
    Refusal::Failed("the Raft node is shutting down".into())
}

/// Takes the writes queued whenever a batch may go, in arrival order, and proposes them as one entry.
async fn propose_batches(
    raft: Raft,
    mut waiting: mpsc::UnboundedReceiver<Waiting>,
    timeout: Duration,
    proposed: Arc<Proposed>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let batch = gather(first, &mut waiting);
        let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.command, w.reply)).unzip();
        proposed.entries.fetch_add(1, Ordering::Relaxed);
        proposed.writes.fetch_add(commands.len() as u64, Ordering::Relaxed);
        // Handed to Raft here, in order; only the wait for the outcome runs apart.
        match raft.client_write_ff(commands).await {
            Ok(outcome) => {
                tokio::spawn(answer(outcome, replies, permit, timeout));
            }
            Err(fatal) => reply_all(replies, || Refusal::Failed(fatal.to_string())),
        }
    }
}

/// `first` and the writes queued behind it, within the batch limits.
fn gather(first: Waiting, waiting: &mut mpsc::UnboundedReceiver<Waiting>) -> Vec<Waiting> {
    let mut bytes = value_bytes(&first.command);
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
        let Ok(next) = waiting.try_recv() else { break };
        bytes += value_bytes(&next.command);
        batch.push(next);
    }
    batch
}

fn value_bytes(command: &Command) -> usize {
    match command {
        Command::Create { key, value } | Command::Update { key, value, .. } => key.len() + value.len(),
        Command::Delete { key, .. } => key.len(),
        Command::Compact { .. } => 0,
    }
}

/// Waits for a batch's outcome (up to `timeout`) and answers each of its writes; frees its place in flight.
async fn answer<E>(
    outcome: impl Future<Output = Result<ClientWriteResult<TypeConfig>, E>>,
    replies: Vec<oneshot::Sender<Result<Outcome, Refusal>>>,
    _permit: OwnedSemaphorePermit,
    timeout: Duration,
) {
    match tokio::time::timeout(timeout, outcome).await {
        Ok(Ok(Ok(response))) => {
            for (reply, outcome) in replies.into_iter().zip(response.data) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(Ok(Err(ClientWriteError::ForwardToLeader(_)))) => reply_all(replies, || Refusal::NotLeader),
        Ok(Ok(Err(other))) => reply_all(replies, || Refusal::Failed(other.to_string())),
        // The node stopped with the batch proposed: it may have been committed.
        Ok(Err(_)) => reply_all(replies, || Refusal::Indeterminate("the Raft node stopped".into())),
        Err(_) => reply_all(replies, || Refusal::Indeterminate(format!("not committed within {timeout:?}"))),
    }
}

fn reply_all(replies: Vec<oneshot::Sender<Result<Outcome, Refusal>>>, refusal: impl Fn() -> Refusal) {
    for reply in replies {
        let _ = reply.send(Err(refusal()));
    }
}
