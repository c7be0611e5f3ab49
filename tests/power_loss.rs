//! The power-loss model on one server: writers create ConfigMaps as fast as the server takes them while
//! the server is killed with SIGKILL at an arbitrary moment, five times over; after each kill SQLite's
//! integrity check passes on the store and on the Raft log, and after each restart every create that
//! was acknowledged is there.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use common::TugServer;

async fn configmaps(server: &TugServer) -> Api<ConfigMap> {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    Api::namespaced(kube::Client::try_from(config).expect("client"), "default")
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"v": name}})).expect("configmap")
}

/// SQLite's own verdict on the database at `path`.
fn integrity(path: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("open database");
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity_check")
}

const WRITERS: usize = 4;
const ROUNDS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_during_writes() {
    let mut server = TugServer::start();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let api = configmaps(&server).await;
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (api, acked) = (api.clone(), acked.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let name = format!("r{round}-w{writer}-{i}");
                        match api.create(&PostParams::default(), &config_map(&name)).await {
                            Ok(_) => acked.lock().expect("acked").push(name),
                            // The server is gone: this write's fate is unknown, the writer stops.
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        // Kill at a different point of the write stream each round.
        tokio::time::sleep(Duration::from_millis(300 + 250 * round as u64)).await;
        tokio::task::block_in_place(|| server.kill());
        for writer in writers {
            writer.await.expect("writer");
        }
        let db = server.data_dir().join("server/db");
        assert_eq!(integrity(&db.join("state.db")), "ok", "the store after kill {round}");
        assert_eq!(integrity(&db.join("raft.db")), "ok", "the Raft log after kill {round}");
        acknowledged.extend(acked.lock().expect("acked").drain(..));
        tokio::task::block_in_place(|| server.restart());
        let api = configmaps(&server).await;
        let present: std::collections::HashSet<String> = api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|cm| cm.metadata.name)
            .collect();
        let lost: Vec<&String> = acknowledged.iter().filter(|name| !present.contains(*name)).collect();
        assert!(lost.is_empty(), "acknowledged writes lost after kill {round}: {lost:?}");
    }
    eprintln!("{ROUNDS} kills during writes: {} acknowledged creates, none lost", acknowledged.len());
    assert!(acknowledged.len() >= ROUNDS * WRITERS, "the writers got writes through between the kills");
}
