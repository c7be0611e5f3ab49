//! Store behaviour tests on a real SQLite file in a temp dir.

use super::*;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.db")).expect("open");
    (dir, store)
}

async fn create(store: &Store, key: &str, value: &str) -> Record {
    store
        .apply(Command::Create { key: key.into(), value: value.as_bytes().to_vec() })
        .await
        .expect("store")
        .expect("created")
}

#[tokio::test]
async fn create_update_delete_with_revisions() {
    let (_dir, store) = open();
    let a = create(&store, "/r/a", "1").await;
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
    let dup = store.apply(Command::Create { key: "/r/a".into(), value: b"x".to_vec() }).await.expect("store");
    assert!(matches!(dup, Err(CommandError::AlreadyExists { .. })));

    let stale = Command::Update { key: "/r/a".into(), value: b"2".to_vec(), expected_revision: 7 };
    assert!(matches!(store.apply(stale).await.expect("store"), Err(CommandError::Conflict { .. })));
    let ok = Command::Update { key: "/r/a".into(), value: b"2".to_vec(), expected_revision: 1 };
    let b = store.apply(ok).await.expect("store").expect("updated");
    assert_eq!((b.create_revision, b.mod_revision), (1, 2));

    let gone = store.apply(Command::Delete { key: "/r/a".into(), expected_revision: 2 }).await.expect("store");
    assert_eq!(gone.expect("deleted").mod_revision, 3);
    assert_eq!(store.get("/r/a").await.expect("get"), None);
    assert_eq!(store.current_revision(), 3);
}

#[tokio::test]
async fn lists_page_and_read_older_revisions() {
    let (_dir, store) = open();
    for i in 0..5 {
        create(&store, &format!("/r/k{i}"), &i.to_string()).await;
    }
    create(&store, "/s/other", "x").await;
    let page = store.list("/r/", ListOptions { limit: 2, ..Default::default() }).await.expect("list");
    assert_eq!(page.records.len(), 2);
    assert!(page.more);
    let rest = store
        .list("/r/", ListOptions { start_after: Some(page.records[1].key.clone()), ..Default::default() })
        .await
        .expect("list");
    assert_eq!(rest.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["/r/k2", "/r/k3", "/r/k4"]);

    let update = Command::Update { key: "/r/k0".into(), value: b"new".to_vec(), expected_revision: 1 };
    store.apply(update).await.expect("store").expect("updated");
    store.apply(Command::Delete { key: "/r/k1".into(), expected_revision: 2 }).await.expect("store").expect("deleted");
    let old = store.list("/r/", ListOptions { revision: 6, ..Default::default() }).await.expect("old list");
    assert_eq!(old.records.len(), 5);
    assert_eq!(old.records[0].value, Bytes::from_static(b"0"));
    let now = store.list("/r/", ListOptions::default()).await.expect("list");
    assert_eq!(now.records.len(), 4);
    assert_eq!(now.revision, 8);
}

#[tokio::test]
async fn watch_replays_history_then_streams_live() {
    let (_dir, store) = open();
    create(&store, "/r/a", "1").await;
    create(&store, "/r/b", "2").await;
    let mut watch = store.watch("/r/", 1).await.expect("watch");
    create(&store, "/x/ignored", "3").await;
    store.apply(Command::Delete { key: "/r/a".into(), expected_revision: 1 }).await.expect("store").expect("del");
    let first = watch.next().await.expect("event").expect("ok");
    assert_eq!((first.kind, first.record.key.as_str()), (EventKind::Added, "/r/b"));
    let second = watch.next().await.expect("event").expect("ok");
    assert_eq!((second.kind, second.record.mod_revision), (EventKind::Deleted, 4));
    assert_eq!(second.record.value, Bytes::from_static(b"1"));
    assert_eq!(store.watch_count(), 1);
    drop(watch);
    assert_eq!(store.watch_count(), 0);
}

#[tokio::test]
async fn compaction_keeps_live_keys_and_expires_old_revisions() {
    let (_dir, store) = open();
    create(&store, "/r/a", "1").await;
    let update = Command::Update { key: "/r/a".into(), value: b"2".to_vec(), expected_revision: 1 };
    store.apply(update).await.expect("store").expect("updated");
    create(&store, "/r/b", "3").await;
    store.apply(Command::Delete { key: "/r/b".into(), expected_revision: 3 }).await.expect("store").expect("del");
    store.apply(Command::Compact { revision: 3 }).await.expect("store").expect("compacted");
    assert_eq!(store.compacted_revision(), 3);
    let err = store.list("/r/", ListOptions { revision: 2, ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, StoreError::Compacted { requested: 2, compacted: 3 }));
    assert!(matches!(store.watch("/r/", 1).await, Err(StoreError::Compacted { .. })));
    let at3 = store.list("/r/", ListOptions { revision: 3, ..Default::default() }).await.expect("list at 3");
    assert_eq!(at3.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["/r/a", "/r/b"]);
    let again = store.apply(Command::Compact { revision: 2 }).await.expect("store");
    assert!(matches!(again, Err(CommandError::BadCompaction { .. })));
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let store = Store::open(&path).expect("open");
        create(&store, "/r/a", "1").await;
        create(&store, "/r/b", "2").await;
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.current_revision(), 2);
    assert_eq!(store.get("/r/b").await.expect("get").map(|r| r.mod_revision), Some(2));
    assert_eq!(create(&store, "/r/c", "3").await.mod_revision, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_transactions() {
    let (_dir, store) = open();
    let writes = (0..200).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { create(&store, &format!("/r/{i:03}"), "v").await.mod_revision })
    });
    let mut revisions: Vec<i64> =
        futures::future::join_all(writes).await.into_iter().map(|r| r.expect("task")).collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=200).collect::<Vec<_>>());
    let metrics = store.metrics();
    assert_eq!(metrics.commands, 200);
    assert!(metrics.batches < 200, "expected group commit, got {} batches", metrics.batches);
    assert!(
        (1..=metrics.batches).contains(&metrics.syncs),
        "every transaction is made durable by an fsync shared with others: {metrics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_a_ring_behind_is_told_to_relist() {
    let (_dir, store) = open();
    let mut watch = store.watch("/r/", 0).await.expect("watch");
    let keys: Vec<String> = (0..17 * 1024).map(|i| format!("/r/{i:05}")).collect();
    for chunk in keys.chunks(1024) {
        let writes = chunk.iter().map(|k| {
            let store = store.clone();
            let key = k.clone();
            tokio::spawn(async move { store.apply(Command::Create { key, value: b"v".to_vec() }).await })
        });
        for w in futures::future::join_all(writes).await {
            w.expect("task").expect("store").expect("created");
        }
    }
    let mut seen = 0;
    loop {
        match watch.next().await {
            Some(Ok(_)) => seen += 1,
            Some(Err(WatchError::Lagged)) => break,
            None => panic!("the stream ended without saying it lagged"),
        }
        assert!(seen <= keys.len(), "every event arrived although the ring overflowed");
    }
    assert!(seen < keys.len());
}

#[tokio::test]
async fn migrating_from_the_first_schema_keeps_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(include_str!("../../migrations/0001_objects_and_history.sql")).expect("v1 schema");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY);
             INSERT INTO schema_migrations VALUES (1);
             INSERT INTO objects VALUES ('/r/a', 1, 1, x'31');
             INSERT INTO history VALUES (1, '/r/a', 0, 1, x'31');
             UPDATE counters SET value = 1 WHERE name = 'revision';",
        )
        .expect("v1 data");
    }
    let store = Store::open(&path).expect("migrate");
    let record = store.get("/r/a").await.expect("get").expect("present");
    assert_eq!((record.value, record.mod_revision), (Bytes::from_static(b"1"), 1));
    assert_eq!(store.list("/r/", ListOptions::default()).await.expect("list").records.len(), 1);
}

#[tokio::test]
async fn revisions_never_go_back_after_compacting_away_the_newest_tombstone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let store = Store::open(&path).expect("open");
        create(&store, "/r/a", "1").await;
        store.apply(Command::Delete { key: "/r/a".into(), expected_revision: 1 }).await.expect("store").expect("del");
        store.apply(Command::Compact { revision: 2 }).await.expect("store").expect("compacted");
        assert_eq!(store.current_revision(), 2);
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.current_revision(), 2);
    assert_eq!(create(&store, "/r/b", "2").await.mod_revision, 3);
}

#[tokio::test]
async fn restoring_a_copy_replaces_the_contents_and_ends_open_watches() {
    let (dir, source) = open();
    create(&source, "/r/kept", "from the copy").await;
    create(&source, "/r/also-kept", "2").await;
    let copy = dir.path().join("copy.db");
    source.copy_to(&copy).await.expect("copy");

    let (_other_dir, store) = open();
    create(&store, "/r/replaced", "x").await;
    let mut watch = store.watch("/r/", store.current_revision()).await.expect("watch");
    store.restore_from(&copy).await.expect("restore");
    assert!(matches!(watch.next().await, Some(Err(WatchError::Lagged))), "the watcher must relist");
    assert_eq!(store.get("/r/replaced").await.expect("get"), None);
    let kept = store.get("/r/kept").await.expect("get").expect("kept");
    assert_eq!(&kept.value[..], b"from the copy");
    assert_eq!(store.current_revision(), source.current_revision());
    // Writes go on from the copy's revision.
    assert_eq!(create(&store, "/r/after", "3").await.mod_revision, source.current_revision() + 1);
}
