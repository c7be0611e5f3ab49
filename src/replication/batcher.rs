//! Group commit above Raft, on every server: the writes a server takes while its earlier ones are in
//! flight are gathered into one batch, committed as one log entry — proposed by the leader itself, or
//! sent by a follower to the leader in one request — so that one forward, one log fsync on each member,
//! one replication round and one store transaction serve them all (openraft appends and flushes each
//! entry before taking the next, so the store's own group commit alone would see one write at a time).
//! A batch goes as soon as fewer than [`MAX_IN_FLIGHT`] of the server's batches are waiting for their
//! outcome; under load the queue fills meanwhile.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::store::{Command, Outcome, StoreError};

/// Batches sent and not yet answered at any time: one being appended while the one before it
/// replicates and applies.
const MAX_IN_FLIGHT: usize = 2;
/// The most writes one batch carries.
const MAX_BATCH_WRITES: usize = 512;
/// Beyond this many bytes of keys and values, a batch takes no more writes (one larger write goes
/// alone), so that an entry stays far below the largest replication message.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Writes waiting for a batch beyond which more wait to be queued.
const MAX_QUEUED: usize = 8192;

/// Commits a batch (through the leader) and returns each write's outcome, in order.
pub type Commit = Arc<dyn Fn(Vec<Command>) -> BoxFuture<'static, Result<Vec<Outcome>, StoreError>> + Send + Sync>;

/// A write waiting for its batch.
struct Waiting {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// A server's write queue.
pub struct Batcher {
    queue: mpsc::Sender<Waiting>,
    timeout: Duration,
}

impl Batcher {
    /// Starts batching writes into `commit`; a write not answered within `timeout` (its batch may
    /// still be committed) is given up as indeterminate.
    pub fn start(commit: Commit, timeout: Duration) -> Batcher {
        let (queue, waiting) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(send_batches(commit, waiting));
        Batcher { queue, timeout }
    }

    /// Commits `command` in a batch and returns its outcome once applied.
    pub async fn write(&self, command: Command) -> Result<Outcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let queued = async {
            self.queue.send(Waiting { command, reply }).await.map_err(|_| StoreError::Closed)?;
            outcome.await.map_err(|_| StoreError::Closed)?
        };
        match tokio::time::timeout(self.timeout, queued).await {
            Ok(answer) => answer,
            Err(_) => Err(StoreError::Indeterminate(format!("not applied within {:?}", self.timeout))),
        }
    }
}

/// Takes the writes queued whenever a batch may go, in arrival order, and commits them together.
async fn send_batches(commit: Commit, mut waiting: mpsc::Receiver<Waiting>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let (commands, replies): (Vec<_>, Vec<_>) =
            gather(first, &mut waiting).into_iter().map(|w| (w.command, w.reply)).unzip();
        let committed = commit(commands);
        tokio::spawn(async move {
            answer(replies, committed.await);
            drop(permit);
        });
    }
}

/// `first` and the writes queued behind it, within the batch limits.
fn gather(first: Waiting, waiting: &mut mpsc::Receiver<Waiting>) -> Vec<Waiting> {
    let mut bytes = size(&first.command);
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
        let Ok(next) = waiting.try_recv() else { break };
        bytes += size(&next.command);
        batch.push(next);
    }
    batch
}

fn size(command: &Command) -> usize {
    match command {
        Command::Create { key, value } | Command::Update { key, value, .. } => key.len() + value.len(),
        Command::Delete { key, .. } => key.len(),
        Command::Compact { .. } => 0,
    }
}

/// Answers each write of a batch with its outcome, or all of them with the batch's failure.
fn answer(replies: Vec<oneshot::Sender<Result<Outcome, StoreError>>>, committed: Result<Vec<Outcome>, StoreError>) {
    match committed {
        Ok(outcomes) if outcomes.len() == replies.len() => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(outcomes) => {
            let wrong = format!("{} outcomes came back for a batch of {} writes", outcomes.len(), replies.len());
            for reply in replies {
                let _ = reply.send(Err(StoreError::Indeterminate(wrong.clone())));
            }
        }
        Err(failure) => {
            for reply in replies {
                let _ = reply.send(Err(for_each_write(&failure)));
            }
        }
    }
}

/// A batch's failure, for each of its writes.
fn for_each_write(failure: &StoreError) -> StoreError {
    match failure {
        StoreError::Indeterminate(reason) => StoreError::Indeterminate(reason.clone()),
        StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Unavailable(other.to_string()),
    }
}
