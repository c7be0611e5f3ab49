//! Group commit above Raft: the writes a server takes while earlier batches are in flight are gathered
//! into one batch. On the leader a batch is proposed as one log entry ([`Proposer`]), so that one log
//! fsync on each member, one replication round and one store transaction serve them all (openraft
//! appends and flushes each entry before taking the next, so the store's own group commit alone would
//! see one write at a time). A follower sends its batch to the leader in one request ([`Forwarder`]),
//! and the leader queues those writes one by one with its own, so that they share its entries (a
//! follower's batch proposed as an entry of its own was measured slower: entries a third as large).
//! A batch goes as soon as fewer than the allowed number of batches are waiting for their outcome;
//! under load the queue fills meanwhile.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::network::{CallError, WRITES_PATH};
use super::pool::Pool;
use super::types::Raft;
use super::Refusal;
use crate::store::{Command, Outcome};

/// The most writes one batch carries.
const MAX_BATCH_WRITES: usize = 512;
/// The most bytes of keys and values one batch carries (one larger write goes alone): an entry must
/// reach a follower within openraft's AppendEntries deadline, the heartbeat interval.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Writes waiting for a batch beyond which more wait to be queued.
const MAX_QUEUED: usize = 8192;

/// Each write's outcome, in the order of the batch, or why it was not carried out.
pub type Outcomes = Vec<Result<Outcome, Refusal>>;

/// Where a batch goes.
pub trait Commit: Send + Sync + 'static {
    /// Commits `commands` and returns each one's outcome once applied.
    fn commit(&self, commands: Vec<Command>) -> impl Future<Output = Outcomes> + Send;
}

/// A write waiting for its batch.
struct Waiting {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, Refusal>>,
}

/// A write queue, committing batches through one [`Commit`].
pub struct Batcher {
    queue: mpsc::Sender<Waiting>,
    timeout: Duration,
}

impl Batcher {
    /// Starts batching writes into `target`, at most `in_flight` batches waiting for their outcome at
    /// a time; a write not answered within `timeout` (its batch may still be committed) is given up as
    /// indeterminate, one still queued then is dropped.
    pub fn start(target: Arc<impl Commit>, in_flight: usize, timeout: Duration) -> Batcher {
        let (queue, waiting) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(send_batches(target, in_flight, waiting));
        Batcher { queue, timeout }
    }

    /// Commits `command` in a batch and returns its outcome once applied.
    pub async fn write(&self, command: Command) -> Result<Outcome, Refusal> {
        let (reply, outcome) = oneshot::channel();
        let stopped = || Refusal::Failed("the Raft node is shutting down".into());
        let queued = async {
            self.queue.send(Waiting { command, reply }).await.map_err(|_| stopped())?;
            outcome.await.map_err(|_| stopped())?
        };
        match tokio::time::timeout(self.timeout, queued).await {
            Ok(answer) => answer,
            Err(_) => Err(Refusal::Indeterminate(format!("not applied within {:?}", self.timeout))),
        }
    }

    /// Commits each of `commands` in a batch (not necessarily the same) and returns their outcomes.
    pub async fn write_all(&self, commands: Vec<Command>) -> Outcomes {
        futures::future::join_all(commands.into_iter().map(|command| self.write(command))).await
    }
}

/// Takes the writes queued whenever a batch may go, in arrival order, and commits them together.
async fn send_batches(target: Arc<impl Commit>, in_flight: usize, mut waiting: mpsc::Receiver<Waiting>) {
    let in_flight = Arc::new(Semaphore::new(in_flight));
    let mut next = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let batch = gather(&mut next, &mut waiting).await;
        if batch.is_empty() {
            return;
        }
        let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.command, w.reply)).unzip();
        let target = target.clone();
        tokio::spawn(async move {
            for (reply, outcome) in replies.into_iter().zip(target.commit(commands).await) {
                let _ = reply.send(outcome);
            }
            drop(permit);
        });
    }
}

/// The next batch: `next` (the write the previous batch had no room for) or the next write to come,
/// then those queued behind it, within the batch limits; the first that does not fit is left in
/// `next`. Writes whose callers gave up are dropped, so that a write reported as timed out in the
/// queue is never committed later. Empty once the queue is closed.
async fn gather(next: &mut Option<Waiting>, waiting: &mut mpsc::Receiver<Waiting>) -> Vec<Waiting> {
    let (mut batch, mut bytes) = (Vec::new(), 0);
    while batch.len() < MAX_BATCH_WRITES {
        let write = match next.take() {
            Some(write) => write,
            None if batch.is_empty() => match waiting.recv().await {
                Some(write) => write,
                None => break,
            },
            None => match waiting.try_recv() {
                Ok(write) => write,
                Err(_) => break,
            },
        };
        if write.reply.is_closed() {
            continue;
        }
        let size = size(&write.command);
        if !batch.is_empty() && bytes + size > MAX_BATCH_BYTES {
            *next = Some(write);
            break;
        }
        bytes += size;
        batch.push(write);
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

/// `count` outcomes from a batch's: each write's own, or the batch's refusal for every write.
fn each(count: usize, batch: Result<Outcomes, Refusal>) -> Outcomes {
    match batch {
        Ok(outcomes) if outcomes.len() == count => outcomes,
        Ok(outcomes) => {
            let wrong = format!("{} outcomes came back for a batch of {count} writes", outcomes.len());
            vec![Err(Refusal::Indeterminate(wrong)); count]
        }
        Err(refusal) => vec![Err(refusal); count],
    }
}

/// The leader's batches, each proposed as one log entry.
pub struct Proposer {
    raft: Raft,
    /// How long a batch may take to be committed and applied (without a quorum it would wait for ever).
    timeout: Duration,
    /// The entries this server committed as leader, and the writes they carried, for /metrics.
    entries: AtomicU64,
    writes: AtomicU64,
}

impl Proposer {
    pub fn new(raft: Raft, timeout: Duration) -> Proposer {
        Proposer { raft, timeout, entries: AtomicU64::new(0), writes: AtomicU64::new(0) }
    }

    /// The log entries this server committed as leader, and the writes they carried.
    pub fn proposed(&self) -> (u64, u64) {
        (self.entries.load(Ordering::Relaxed), self.writes.load(Ordering::Relaxed))
    }

    async fn propose(&self, commands: Vec<Command>) -> Result<Outcomes, Refusal> {
        let writes = commands.len() as u64;
        let outcomes = match tokio::time::timeout(self.timeout, self.raft.client_write(commands)).await {
            Ok(Ok(response)) => response.data,
            // Refused before it was appended, or its entry was truncated: certainly not done.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => return Err(Refusal::NotLeader),
            Ok(Err(other)) => return Err(Refusal::Indeterminate(other.to_string())),
            Err(_) => return Err(Refusal::Indeterminate(format!("not committed within {:?}", self.timeout))),
        };
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
        Ok(outcomes.into_iter().map(Ok).collect())
    }
}

impl Commit for Proposer {
    async fn commit(&self, commands: Vec<Command>) -> Outcomes {
        let count = commands.len();
        each(count, self.propose(commands).await)
    }
}

/// A follower's batches, each sent to the leader at `address` in one request.
pub struct Forwarder {
    pub address: String,
    pub peers: Arc<Pool>,
    /// The request's deadline.
    pub timeout: Duration,
}

impl Commit for Forwarder {
    async fn commit(&self, commands: Vec<Command>) -> Outcomes {
        let count = commands.len();
        let answer = self.peers.call(&self.address, WRITES_PATH, &commands, self.timeout).await;
        each(count, answer.map_err(refusal_of_call))
    }
}

/// What a failed call to the leader means for a write: not sent at all (the leader is gone; the
/// next one is worth waiting for), or sent with an unknown outcome.
pub fn refusal_of_call(error: CallError) -> Refusal {
    match error {
        CallError::Connect { .. } => Refusal::NotLeader,
        other => Refusal::Indeterminate(format!("the leader: {other}")),
    }
}
