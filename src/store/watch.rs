//! The watch hub: fans every applied change out to all watchers through one bounded broadcast ring, so a
//! slow watcher never blocks the writer or the other watchers. A watcher that falls a whole ring behind
//! is told so (WatchError::Lagged) and must relist, as upstream's 410 Gone asks; nothing is skipped silently.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::RwLock;

use bytes::Bytes;
use tokio::sync::broadcast;

use super::command::{Change, CREATED, DELETED};
use super::Record;

/// How many events the ring holds before a watcher that has not read them is dropped.
const RING: usize = 16 * 1024;

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change. For a delete, `record` is the last value with `mod_revision` = the delete's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub record: Record,
    /// The value before the change (None for a create), so that filtered watches can tell an object
    /// that stopped matching from one that never matched.
    pub prev: Option<Bytes>,
    /// Caches for the API server, filled by the first watcher that needs them and shared by all the
    /// others (upstream's watch cache caches decoded objects and serializations the same way): the
    /// decoded value (only Table watchers need it whole), the JSON rendering, the decoded metadata
    /// alone (for metadata-only watchers, such as the garbage collector's), and the parts of the value
    /// and of the previous value that selectors read (for watchers with selectors). Only small parts
    /// are kept for the common cases, as the ring holds thousands of events.
    pub decoded: std::sync::OnceLock<serde_json::Value>,
    pub decoded_metadata: std::sync::OnceLock<serde_json::Value>,
    pub selectable: std::sync::OnceLock<serde_json::Value>,
    pub selectable_prev: std::sync::OnceLock<serde_json::Value>,
    pub rendered: std::sync::OnceLock<Bytes>,
}

impl Event {
    pub(super) fn from_stored(event: u8, record: Record, prev: Option<Bytes>) -> Event {
        let kind = match event {
            CREATED => EventKind::Added,
            DELETED => EventKind::Deleted,
            _ => EventKind::Modified,
        };
        // A create has no previous value, even when the key existed before an earlier delete.
        let prev = if kind == EventKind::Added { None } else { prev };
        Event {
            kind,
            record,
            prev,
            decoded: Default::default(),
            decoded_metadata: Default::default(),
            selectable: Default::default(),
            selectable_prev: Default::default(),
            rendered: Default::default(),
        }
    }
}

/// Why a watch ended.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("the watcher fell too far behind and must relist")]
    Lagged,
}

struct HubInner {
    /// Replaced when the store's contents are replaced, which ends every watch.
    sender: RwLock<broadcast::Sender<Arc<Event>>>,
    /// Counts those replacements.
    epoch: AtomicU64,
    /// The newest durable revision: everything at or below it is on disk.
    revision: AtomicI64,
    compacted: AtomicI64,
    watchers: AtomicUsize,
}

/// The fan-out point; cheap to clone.
#[derive(Clone)]
pub(super) struct Hub(Arc<HubInner>);

impl Hub {
    pub fn new(revision: i64, compacted: i64) -> Hub {
        let (sender, _) = broadcast::channel(RING);
        Hub(Arc::new(HubInner {
            sender: RwLock::new(sender),
            epoch: AtomicU64::new(0),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            watchers: AtomicUsize::new(0),
        }))
    }

    /// Publishes a durable batch. The revision advances before the events go out: a watch that subscribes
    /// and then reads the revision gets each event either from its backlog (at or below that revision) or
    /// live.
    pub fn publish(&self, changes: Vec<Change>, revision: i64, compacted: i64) {
        self.0.compacted.store(compacted, Ordering::Release);
        self.0.revision.store(revision, Ordering::Release);
        let sender = self.0.sender.read().unwrap_or_else(|e| e.into_inner());
        for change in changes {
            let _ = sender.send(Arc::new(Event::from_stored(change.event, change.record, change.prev)));
        }
    }

    /// After the store's contents were replaced: every open watch ends as if it had lagged (its
    /// watcher relists), and the revisions start from the new contents'.
    pub fn reset(&self, revision: i64, compacted: i64) {
        let mut sender = self.0.sender.write().unwrap_or_else(|e| e.into_inner());
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
        *sender = broadcast::channel(RING).0;
        self.0.compacted.store(compacted, Ordering::Release);
        self.0.revision.store(revision, Ordering::Release);
    }

    pub fn current_revision(&self) -> i64 {
        self.0.revision.load(Ordering::Acquire)
    }

    pub fn compacted_revision(&self) -> i64 {
        self.0.compacted.load(Ordering::Acquire)
    }

    pub fn watcher_count(&self) -> usize {
        self.0.watchers.load(Ordering::Relaxed)
    }

    /// Subscribes to live events; must happen before the backlog is read so nothing falls in between.
    pub fn subscribe(&self) -> Live {
        let sender = self.0.sender.read().unwrap_or_else(|e| e.into_inner());
        // Read under the lock: a reset replaces the sender and bumps the epoch together.
        Live { epoch: self.0.epoch.load(Ordering::Acquire), receiver: sender.subscribe() }
    }

    /// Builds a stream from a backlog read after `live` was subscribed.
    pub fn stream(&self, prefix: String, after_revision: i64, backlog: Vec<Event>, live: Live) -> WatchStream {
        self.0.watchers.fetch_add(1, Ordering::Relaxed);
        WatchStream {
            epoch: live.epoch,
            prefix,
            last_revision: after_revision,
            backlog: backlog.into_iter().map(Arc::new).collect(),
            live: live.receiver,
            hub: self.clone(),
        }
    }
}

/// A subscription to live events, with the hub's epoch it began in.
pub(super) struct Live {
    epoch: u64,
    receiver: broadcast::Receiver<Arc<Event>>,
}

/// The events under one prefix after a revision, in revision order: first the stored backlog, then live.
pub struct WatchStream {
    /// The hub's epoch when the watch began.
    epoch: u64,
    prefix: String,
    last_revision: i64,
    backlog: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    hub: Hub,
}

impl WatchStream {
    /// The next event; `None` when the store shuts down.
    pub async fn next(&mut self) -> Option<Result<Arc<Event>, WatchError>> {
        if let Some(event) = self.backlog.pop_front() {
            self.last_revision = event.record.mod_revision;
            return Some(Ok(event));
        }
        loop {
            match self.live.recv().await {
                Ok(event) => {
                    if event.record.mod_revision <= self.last_revision || !event.record.key.starts_with(&self.prefix) {
                        continue;
                    }
                    self.last_revision = event.record.mod_revision;
                    return Some(Ok(event));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(Err(WatchError::Lagged)),
                Err(broadcast::error::RecvError::Closed) if self.hub.0.epoch.load(Ordering::Acquire) != self.epoch => {
                    return Some(Err(WatchError::Lagged))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The revision of the last event returned (or the start revision).
    pub fn last_revision(&self) -> i64 {
        self.last_revision
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}
