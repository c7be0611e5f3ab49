//! High availability on one host (loopback, distinct ports and data dirs): three servers form one
//! cluster through `--server`/`--token`; writes through any server are read back from every other one;
//! the cluster keeps taking writes while the leader or a follower is killed, catches the killed one up
//! when it returns (by snapshot when the log it missed has been purged), and a watch on a third server
//! sees every write once and in order throughout; a server with another cluster's token cannot join; a
//! server whose data dir was wiped re-joins in its old place; a server restarted on another port is
//! found there; a leader cut off from its quorum is not ready; `tug member` lists the servers and
//! removes one (refused while the servers left would have no quorum).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually_within, kubectl, kubectls, leader, TugServer};

/// Starts a cluster of three servers: the first starts alone, the second joins through it, the third
/// through the second (a follower, which passes the request to the leader).
fn cluster(extra: &[&str]) -> Vec<TugServer> {
    let mut servers = vec![TugServer::start_with(extra)];
    for _ in 0..2 {
        let (url, token) = join_flags(servers.last().expect("a server"));
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

/// Creates ConfigMap `name` through `server`, retrying while the cluster elects a leader (503, or 504
/// when the leader died with the write in flight); the time it took.
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
                || run.stderr.contains("outcome is unknown")
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

/// `kubectl get cm --watch` against `server`, its events written to a file as `TYPE NAME RV` lines.
struct Watch {
    child: std::process::Child,
    output: tempfile::NamedTempFile,
}

impl Watch {
    fn start(server: &TugServer) -> Watch {
        let output = tempfile::NamedTempFile::new().expect("watch output");
        let child = Command::new(&kubectls()[0])
            .env("KUBECONFIG", server.kubeconfig())
            .args(["get", "cm", "--watch", "--output-watch-events", "--request-timeout=0"])
            .args(["-o", "jsonpath={.type} {.object.metadata.name} {.object.metadata.resourceVersion}{\"\\n\"}"])
            .stdout(output.reopen().expect("output file"))
            .spawn()
            .expect("kubectl watch");
        Watch { child, output }
    }

    /// Stops the watch; its events as (type, name, resourceVersion).
    fn events(mut self) -> Vec<(String, String, u64)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(self.output.path()).expect("watch output");
        text.lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(fields.len(), 3, "a watch event line: {line:?}");
                (fields[0].to_string(), fields[1].to_string(), fields[2].parse().expect("resourceVersion"))
            })
            .collect()
    }
}

#[test]
fn three_servers_share_one_store_and_survive_losing_the_leader_or_a_follower() {
    let mut servers = cluster(&[]);
    let first_leader = leader(&servers);
    let (follower, watched) = ((first_leader + 1) % 3, (first_leader + 2) % 3);
    let watch = Watch::start(&servers[watched]);
    create_configmap(&servers[follower], "through-a-follower");
    for server in &servers {
        assert_eq!(configmaps(server), ["through-a-follower"], "every server reads the write at once");
    }
    let mut expected = vec!["through-a-follower".to_string()];
    for what in ["leader", "follower"] {
        // The third server, which the watch is on, is never killed.
        let current = leader(&servers);
        let (victim, writer) = match what {
            "leader" => (current, if current == follower { first_leader } else { follower }),
            _ if current == follower => (first_leader, follower),
            _ => (follower, current),
        };
        assert_ne!(victim, watched);
        servers[victim].kill();
        let name = format!("while-the-{what}-is-down");
        let took = create_configmap(&servers[writer], &name);
        eprintln!("{what} killed: the first write was accepted after {took:?}");
        expected.push(name);
        expected.sort();
        assert_eq!(configmaps(&servers[watched]), expected, "the third server reads the write");
        servers[victim].restart();
        let back = &servers[victim];
        eventually_within(Duration::from_secs(20), "the restarted server catches up", || configmaps(back) == expected);
    }
    // The watch on the server never killed saw every create once, in resourceVersion order.
    let events = watch.events();
    let versions: Vec<u64> = events.iter().map(|(_, _, rv)| *rv).collect();
    assert!(versions.windows(2).all(|pair| pair[0] < pair[1]), "events in order: {events:?}");
    let mut added: Vec<String> = events
        .iter()
        .filter(|(kind, name, _)| kind == "ADDED" && name != "kube-root-ca.crt")
        .map(|(_, name, _)| name.clone())
        .collect();
    added.sort();
    assert_eq!(added, expected, "every create seen once: {events:?}");
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

#[test]
fn a_server_cut_off_from_its_quorum_is_not_ready() {
    let mut servers = cluster(&[]);
    let bin = &kubectls()[0];
    let ready = |server: &TugServer| kubectl(bin, server, &["get", "--raw", "/readyz"], None).code == 0;
    assert!(servers.iter().all(ready));
    let survivor = leader(&servers);
    for (i, server) in servers.iter_mut().enumerate() {
        if i != survivor {
            server.kill();
        }
    }
    let alone = &servers[survivor];
    eventually_within(Duration::from_secs(20), "the leader without a quorum is not ready", || !ready(alone));
    let why = kubectl(bin, alone, &["get", "--raw", "/readyz?verbose"], None);
    assert!(why.stdout.contains("[-]raft-leader failed") || why.stderr.contains("raft-leader"), "{}", why.stderr);
}

#[test]
fn a_server_restarted_on_another_port_is_found_there() {
    let mut servers = cluster(&[]);
    let first_leader = leader(&servers);
    let moved = (first_leader + 1) % 3;
    servers[moved].kill();
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    servers[moved].flags_mut().extend(["--https-listen-port".to_string(), free.to_string()]);
    servers[moved].restart();
    assert_eq!(servers[moved].port, free);
    // The leader replicates to the new address: a current read on the moved server waits until it has
    // applied the write, which fails (503) if the entries never reach it.
    create_configmap(&servers[first_leader], "after-the-move");
    assert_eq!(configmaps(&servers[moved]), ["after-the-move"]);
}

/// Runs `tug member` with `server`'s admin kubeconfig.
fn member(server: &TugServer, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("30")
        .arg(common::server_binary())
        .arg("member")
        .args(args)
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .output()
        .expect("run tug member")
}

/// The (id, role) of each member `tug member ls` lists through `server`.
fn members(server: &TugServer) -> Vec<(String, String)> {
    let listed = member(server, &["ls"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let stdout = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(stdout.starts_with("ID"), "a header first: {stdout}");
    let rows = stdout.lines().skip(1).map(|line| line.split_whitespace().collect::<Vec<_>>());
    rows.map(|fields| (fields[0].to_string(), fields[2].to_string())).collect()
}

fn raft_id(server: &TugServer) -> String {
    std::fs::read_to_string(server.data_dir().join("server/db/raft-id")).expect("raft-id").trim().to_string()
}

/// `tug member` fails with one line on stderr containing `expected`.
fn refused(output: std::process::Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected) && stderr.trim().lines().count() == 1, "{stderr}");
}

#[test]
fn tug_member_lists_the_servers_and_removes_one_that_has_no_node() {
    let mut servers = cluster(&[]);
    let leading = leader(&servers);
    let (asked, removed) = ((leading + 1) % 3, (leading + 2) % 3);
    let mut listed = members(&servers[asked]);
    listed.sort();
    let mut expected: Vec<(String, String)> = servers
        .iter()
        .enumerate()
        .map(|(i, server)| (raft_id(server), if i == leading { "leader" } else { "voter" }.to_string()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    // Asked of a follower, which passes the removal to the leader.
    let done = member(&servers[asked], &["remove", &raft_id(&servers[removed])]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8_lossy(&done.stdout).contains("left the cluster"));
    let gone = &mut servers[removed];
    eventually_within(Duration::from_secs(30), "the removed server exits", || gone.exited().is_some());
    assert!(gone.log().contains("this server was removed from the cluster"), "{}", gone.log());
    assert_eq!(members(&servers[leading]).len(), 2);
    create_configmap(&servers[asked], "after-the-removal");
    refused(member(&servers[asked], &["remove", &raft_id(&servers[removed])]), "no member has id");

    // With one of the two voters down, no change can commit: refused, whichever is to go.
    servers[asked].kill();
    for id in [raft_id(&servers[leading]), raft_id(&servers[asked])] {
        refused(member(&servers[leading], &["remove", &id]), "fewer than their quorum");
    }
    servers[asked].restart();
    let done = member(&servers[leading], &["rm", &raft_id(&servers[asked])]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    // The last voter stays.
    refused(member(&servers[leading], &["remove", &raft_id(&servers[leading])]), "the only voter");

    // Only admins may list or remove members (others are forbidden, the anonymous unauthorized); a bad
    // id is a usage error.
    let bin = &kubectls()[0];
    let token = kubectl(bin, &servers[leading], &["create", "token", "default"], None).ok().stdout;
    let url = format!("https://127.0.0.1:{}/tug/v1/members", servers[leading].port);
    let bearer = format!("Authorization: Bearer {}", token.trim());
    let curl = Command::new("curl").args(["-sk", "-H", &bearer, &url]).output().expect("curl");
    let answer = String::from_utf8_lossy(&curl.stdout);
    assert!(answer.contains("\"code\":403") && answer.contains("system:masters"), "{answer}");
    let anonymous = Command::new("curl").args(["-sk", &url]).output().expect("curl");
    let answer = String::from_utf8_lossy(&anonymous.stdout);
    assert!(answer.contains("\"code\":401"), "{answer}");
    let usage = member(&servers[leading], &["remove", "not-a-number"]);
    assert_eq!(usage.status.code(), Some(2), "{}", String::from_utf8_lossy(&usage.stderr));
}
