//! Tests of a one-server group over a real store: concurrent writes share log entries and each gets its
//! own outcome, in one revision order.

use std::sync::Arc;
use std::time::Duration;

use super::{Replication, Settings};
use crate::store::{Command, CommandError, Store};

/// Replication over the store in `dir` (a member once initialized), with no peers to reach.
async fn start(dir: &std::path::Path) -> (Store, Arc<Replication>) {
    start_with_log_bound(dir, 64 << 20).await
}

/// The same, snapshotting once `snapshot_bytes` of log entries are in no snapshot.
async fn start_with_log_bound(dir: &std::path::Path, snapshot_bytes: u64) -> (Store, Arc<Replication>) {
    let store = Store::open(&dir.join("state.db")).expect("store");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let settings = Settings {
        dir: dir.to_path_buf(),
        address: "127.0.0.1:1".into(),
        tls: Arc::new(tls),
        snapshot_entries: 10_000,
        snapshot_bytes,
        timing: super::Timing { heartbeat: Duration::from_millis(100), election_timeout: Duration::from_secs(1) },
    };
    let replication = Replication::start(&store, settings).await.expect("replication");
    (store, replication)
}

/// A new one-server group in `dir`, leading.
async fn lone_server(dir: &std::path::Path) -> (Store, Arc<Replication>) {
    lead(start(dir).await).await
}

/// `started` made a group of one and its leader.
async fn lead((store, replication): (Store, Arc<Replication>)) -> (Store, Arc<Replication>) {
    replication.initialize_alone().await.expect("initialize");
    replication.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    (store, replication)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_and_keep_their_own_outcomes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, replication) = lone_server(dir.path()).await;
    let writes = 300;
    let tasks: Vec<_> = (0..writes)
        .map(|i| {
            let store = store.clone();
            // Every third write collides with an earlier key: refusals travel in a batch too.
            let key = format!("/r/{}", if i % 3 == 2 { i - 1 } else { i });
            tokio::spawn(async move { store.apply(Command::Create { key, value: vec![b'v'; 100] }).await })
        })
        .collect();
    let mut revisions = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("task").expect("store") {
            Ok(record) => revisions.push(record.mod_revision),
            Err(CommandError::AlreadyExists { .. }) => refused += 1,
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    }
    revisions.sort();
    let created = writes - writes / 3;
    assert_eq!(revisions.len(), created, "every write to a new key is created");
    assert_eq!(refused, writes / 3, "every write to a taken key is refused");
    revisions.dedup();
    assert_eq!(revisions.len(), created, "each created key has its own revision");
    assert_eq!(revisions.last().copied(), Some(store.current_revision()));

    let status = store.replication_status().expect("replicated");
    assert_eq!(status.proposed_writes, writes as u64);
    assert!(
        status.proposed_entries * 4 <= status.proposed_writes,
        "{} writes went into {} log entries: not batched",
        status.proposed_writes,
        status.proposed_entries
    );
    replication.shutdown().await;
}

/// Creates `/r/<i>` for each `i` in `range`, concurrently.
async fn create_all(store: &Store, range: std::ops::Range<usize>) {
    let tasks: Vec<_> = range
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.apply(Command::Create { key: format!("/r/{i}"), value: vec![1] }).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("store").expect("created");
    }
}

/// Every key under `/r/` with its revisions.
async fn contents(store: &Store) -> Vec<(String, i64, i64)> {
    let listed = store.list("/r/", Default::default()).await.expect("list");
    listed.records.into_iter().map(|r| (r.key, r.create_revision, r.mod_revision)).collect()
}

/// A group of one that took 150 writes, stopped, its store then put back to how it was after the
/// first 50 (as a power cut may leave it, its commits not being fsynced once replicated); the 150
/// writes as they were listed before.
async fn store_behind_its_log(dir: &std::path::Path) -> Vec<(String, i64, i64)> {
    let (store, replication) = lone_server(dir).await;
    create_all(&store, 0..50).await;
    let early = dir.join("early.db");
    store.copy_to(&early).await.expect("copy");
    create_all(&store, 50..150).await;
    let before = contents(&store).await;
    assert_eq!(before.len(), 150);
    replication.shutdown().await;
    drop((store, replication));
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("state.db{suffix}")));
    }
    std::fs::rename(&early, dir.join("state.db")).expect("replace the store");
    before
}

/// A store that lost its newest transactions gets them back from the log at start, at the same
/// revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_the_store_lost_are_applied_again_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = store_behind_its_log(dir.path()).await;
    let (store, replication) = start(dir.path()).await;
    replication.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    assert_eq!(contents(&store).await, before);
    replication.shutdown().await;
}

/// The same without starting a node, as `--cluster-reset` does before it forgets the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_log_is_applied_without_a_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = store_behind_its_log(dir.path()).await;
    let store = Store::open(&dir.path().join("state.db")).expect("store");
    assert_eq!(contents(&store).await.len(), 50, "the store is behind");
    super::apply_committed_log(&store, dir.path()).await.expect("apply");
    assert_eq!(contents(&store).await, before);
}

/// Large writes fill the log in bytes long before its entry count calls for a snapshot: one is taken
/// and the log purged behind it down to half the bound, so its size falls back under the bound; the
/// data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_kept_within_its_byte_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bound = 1 << 20;
    let (store, replication) = lead(start_with_log_bound(dir.path(), bound).await).await;
    // 3 MiB in 150 entries, far below the 10000 entries between snapshots.
    for i in 0..150 {
        let value = vec![b'v'; 20 * 1024];
        store.apply(Command::Create { key: format!("/r/{i}"), value }).await.expect("store").expect("created");
    }
    // The same log file through a connection of its own, to measure it.
    let log = super::log_store::LogStore::open(&dir.path().join("raft.db")).expect("the log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = replication.raft.metrics().borrow().clone();
        let log_bytes = store.replication_status().expect("replicated").log_bytes;
        // Every write applied is in a snapshot or within the bound above it; what the snapshot covers
        // was purged down to half the bound.
        let applied = metrics.last_applied.map(|id| id.index);
        let [covered, applied_since, _] =
            log.bytes_by_range(metrics.snapshot.map(|s| s.index), applied).await.expect("measure the log");
        if metrics.purged.is_some() && log_bytes < bound && covered <= bound / 2 && applied_since <= bound {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "log of {log_bytes} bytes, purged {:?}", metrics.purged);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(contents(&store).await.len(), 150);
    replication.shutdown().await;
}
