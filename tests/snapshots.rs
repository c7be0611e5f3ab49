//! Store snapshots as k3s's etcd-snapshot: `tug snapshot save` beside a running server, `ls`, `delete`,
//! `prune`, scheduled snapshots with retention, and `tug server --cluster-reset
//! --cluster-reset-restore-path` bringing the store back to a snapshot as a cluster of one that other
//! servers can join.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{eventually_within, kubectl, kubectls, TugServer};

/// `tug snapshot ARGS --data-dir DIR`, which must end by itself.
fn snapshot(data_dir: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(common::server_binary())
        .arg("snapshot")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run tug snapshot")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "tug snapshot failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The snapshot files' names in `tug snapshot ls`.
fn listed(data_dir: &Path) -> Vec<String> {
    let out = stdout(&snapshot(data_dir, &["ls"]));
    out.lines().skip(1).filter_map(|line| line.split_whitespace().next().map(str::to_string)).collect()
}

fn configmaps(server: &TugServer) -> Vec<String> {
    let bin = &kubectls()[0];
    let out = kubectl(bin, server, &["get", "cm", "-o", "jsonpath={.items[*].metadata.name}"], None).ok();
    out.stdout.split_whitespace().filter(|n| *n != "kube-root-ca.crt").map(str::to_string).collect()
}

fn create_configmap(server: &TugServer, name: &str) {
    kubectl(&kubectls()[0], server, &["create", "cm", name], None).ok();
}

#[test]
fn a_saved_snapshot_restores_with_cluster_reset_and_others_can_join_after() {
    let mut server = TugServer::start();
    create_configmap(&server, "before");
    let saved = stdout(&snapshot(server.data_dir(), &["save"]));
    let path = saved.trim().strip_prefix("Snapshot ").and_then(|s| s.strip_suffix(" saved.")).expect(&saved);
    assert!(Path::new(path).starts_with(server.data_dir().join("server/db/snapshots")), "{path}");
    create_configmap(&server, "after");
    server.kill();

    let reset = Command::new("timeout")
        .arg("120")
        .arg(common::server_binary())
        .args(["server", "--disable-agent", "--config", "/dev/null", "--bind-address", "127.0.0.1"])
        .args([
            "--https-listen-port",
            &server.port.to_string(),
            "--cluster-reset",
            "--cluster-reset-restore-path",
            path,
        ])
        .arg("--data-dir")
        .arg(server.data_dir())
        .arg("--write-kubeconfig")
        .arg(server.kubeconfig())
        .output()
        .expect("run the cluster reset");
    assert!(reset.status.success(), "cluster reset failed: {}", String::from_utf8_lossy(&reset.stderr));
    server.restart();
    assert_eq!(configmaps(&server), ["before"], "the store is back to the snapshot");

    let token = std::fs::read_to_string(server.data_dir().join("server/token")).expect("token");
    let url = format!("https://127.0.0.1:{}", server.port);
    let joiner = TugServer::start_with(&["--server", &url, "--token", token.trim()]);
    assert_eq!(configmaps(&joiner), ["before"], "a server joining after the reset gets the restored store");
    create_configmap(&joiner, "joined");
    assert_eq!(configmaps(&server), ["before", "joined"]);
}

#[test]
fn snapshots_are_scheduled_listed_deleted_and_pruned() {
    // Every minute, keeping one.
    let server = TugServer::start_with(&["--snapshot-schedule-cron", "* * * * *", "--snapshot-retention", "1"]);
    let dir = server.data_dir();
    for _ in 0..3 {
        stdout(&snapshot(dir, &["save", "--name", "manual"]));
        // Snapshot names carry the second they were taken.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let manual: Vec<String> = listed(dir).into_iter().filter(|n| n.starts_with("manual-")).collect();
    assert_eq!(manual.len(), 3, "{manual:?}");
    let pruned = stdout(&snapshot(dir, &["prune", "--name", "manual", "--snapshot-retention", "2"]));
    assert_eq!(pruned.trim(), format!("Snapshot {} deleted.", manual[0]), "the oldest goes");
    stdout(&snapshot(dir, &["delete", &manual[1]]));
    let left: Vec<String> = listed(dir).into_iter().filter(|n| n.starts_with("manual-")).collect();
    assert_eq!(left, [manual[2].clone()]);
    let unknown = snapshot(dir, &["delete", "manual-nope-1"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no snapshot \"manual-nope-1\""));

    eventually_within(Duration::from_secs(75), "a scheduled snapshot is taken", || {
        listed(dir).iter().any(|n| n.starts_with("scheduled-"))
    });
}
