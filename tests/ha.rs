//! High availability on one host (loopback, distinct ports and data dirs): three servers form one
//! cluster through `--server`/`--token`; writes through any server are read back from every other one;
//! the cluster keeps taking writes while any one server is killed and catches the killed one up when it
//! returns (by snapshot when the log it missed has been purged); a server with another cluster's token
//! cannot join; a server whose data dir was wiped re-joins in its old place.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually_within, kubectl, kubectls, TugServer};

/// Starts a cluster of three servers; the first starts alone, the others join through it.
fn cluster(extra: &[&str]) -> Vec<TugServer> {
    let first = TugServer::start_with(extra);
    let (url, token) = join_flags(&first);
    let mut servers = vec![first];
    for _ in 0..2 {
        let mut flags: Vec<&str> = vec!["--server", &url, "--token", &token];
        flags.extend(extra);
        servers.push(TugServer::start_with(&flags));
    }
    servers
}

/// The `--server` URL and `--token` that join `server`'s cluster.
fn join_flags(server: &TugServer) -> (String, String) {
    let token = std::fs::read_to_string(server.data_dir().join("server/token")).expect("token");
    (format!("https://127.0.0.1:{}", server.port), token.trim().to_string())
}

/// The ConfigMaps' names in `default`, as `server` lists them.
fn configmaps(server: &TugServer) -> Vec<String> {
    let bin = &kubectls()[0];
    let out = kubectl(bin, server, &["get", "cm", "-o", "jsonpath={.items[*].metadata.name}"], None).ok();
    out.stdout.split_whitespace().filter(|n| *n != "kube-root-ca.crt").map(str::to_string).collect()
}

/// Creates ConfigMap `name` through `server`, retrying while the cluster elects a leader (503); the
/// time it took.
fn create_configmap(server: &TugServer, name: &str) -> Duration {
    let bin = &kubectls()[0];
    let started = Instant::now();
    loop {
        let run = kubectl(bin, server, &["create", "cm", name, "--from-literal=k=v"], None);
        if run.code == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no write accepted within 30 s: {}\n{}",
            run.stderr,
            server.log()
        );
        assert!(
            run.stderr.contains("ServiceUnavailable")
                || run.stderr.contains("unavailable")
                || run.stderr.contains("already exists"),
            "unexpected failure: {}",
            run.stderr
        );
        if run.stderr.contains("already exists") {
            // An earlier attempt was applied though its answer was lost.
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_servers_share_one_store_and_survive_losing_any_one() {
    let mut servers = cluster(&[]);
    create_configmap(&servers[1], "through-a-follower");
    for server in &servers {
        assert_eq!(configmaps(server), ["through-a-follower"], "every server reads the write at once");
    }
    let mut expected = vec!["through-a-follower".to_string()];
    for victim in 0..3 {
        servers[victim].kill();
        let survivor = &servers[(victim + 1) % 3];
        let name = format!("while-{victim}-is-down");
        let took = create_configmap(survivor, &name);
        eprintln!("server {victim} killed: first write accepted after {took:?}");
        expected.push(name);
        expected.sort();
        assert_eq!(configmaps(&servers[(victim + 2) % 3]), expected);
        servers[victim].restart();
        let back = &servers[victim];
        eventually_within(Duration::from_secs(20), "the restarted server catches up", || configmaps(back) == expected);
    }
}

#[test]
fn a_server_far_behind_catches_up_from_a_snapshot() {
    // Snapshots (and log purges) every 50 entries, so a server down for more misses purged entries.
    let mut servers = cluster(&["--raft-snapshot-entries", "50"]);
    servers[2].kill();
    let mut expected: Vec<String> = (0..80).map(|i| format!("cm-{i:03}")).collect();
    for name in &expected {
        create_configmap(&servers[0], name);
    }
    servers[2].restart();
    expected.sort();
    let behind = &servers[2];
    eventually_within(Duration::from_secs(30), "the server installs a snapshot", || configmaps(behind) == expected);
    assert!(behind.log().contains("installed a store snapshot"), "caught up by snapshot:\n{}", behind.log());
}

#[test]
fn a_wiped_server_rejoins_in_its_old_place() {
    let mut servers = cluster(&[]);
    create_configmap(&servers[0], "before");
    servers[2].kill();
    let data = servers[2].data_dir().to_path_buf();
    for entry in std::fs::read_dir(&data).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n != "server.log") {
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    servers[2].restart();
    assert_eq!(configmaps(&servers[2]), ["before"]);
    // The old member was replaced, not added to: with one of three down, a quorum of two remains.
    servers[0].kill();
    create_configmap(&servers[1], "after");
    assert_eq!(configmaps(&servers[2]), ["after", "before"]);
}

#[test]
fn a_server_with_another_clusters_token_cannot_join() {
    let cluster_a = TugServer::start();
    let cluster_b = TugServer::start();
    let (url, _) = join_flags(&cluster_a);
    let (_, other_token) = join_flags(&cluster_b);
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new("timeout")
        .arg("60")
        .arg(common::server_binary())
        .args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--https-listen-port", "0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--server", &url, "--token", &other_token])
        .output()
        .expect("run tug server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "refused, not timed out: {stderr}");
    assert!(stderr.contains("does not match the token's CA hash"), "{stderr}");
}
