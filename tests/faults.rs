//! Fault tests of the replicated store (root, `ip netns`, iptables): three servers, each in a network
//! namespace of its own behind one switch, serve a workload of concurrent clients doing reads and
//! compare-and-sets on ConfigMaps through the API (`faults/workload.rs`) while the test kills the
//! leader, a follower, then all three; cuts the leader off from both followers, then one way only;
//! drops a share of all packets; slows every link (a token bucket: the kernel has no netem); and wipes a
//! follower's data dir and has it re-join. After each fault
//! heals, every server takes writes again. At the end the whole history must be linearizable
//! (`faults/linearizability.rs`: no acknowledged write lost, no stale read), every watch stream on
//! every server ordered and without gaps (`faults/watches.rs`), and every server must hold the same
//! registers at the same resourceVersions and, stopped, the same store contents (`faults/contents.rs`).

mod common;
#[path = "faults/contents.rs"]
mod contents;
#[path = "faults/linearizability.rs"]
mod linearizability;
#[path = "faults/network.rs"]
mod network;
#[path = "faults/watches.rs"]
mod watches;
#[path = "faults/workload.rs"]
mod workload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually_within, in_ci, kubectl, kubectls, leader, TugServer};
use network::Network;

const PORT: u16 = 6443;

/// Waits until every server takes a write; how long that took.
fn serving(servers: &[TugServer], fault: &str) -> Duration {
    let started = Instant::now();
    for (i, server) in servers.iter().enumerate() {
        eventually_within(Duration::from_secs(30), &format!("server {i} takes writes after {fault}"), || {
            let name = format!("probe-{}", started.elapsed().as_nanos());
            kubectl(&kubectls()[0], server, &["create", "cm", &name], None).code == 0
        });
    }
    started.elapsed()
}

/// Each register's value and resourceVersion, as `server` lists them.
fn registers(server: &TugServer) -> String {
    let path = r#"jsonpath={range .items[*]}{.metadata.name}={.data.v}@{.metadata.resourceVersion}{"\n"}{end}"#;
    let listed = kubectl(&kubectls()[0], server, &["get", "cm", "-o", path], None).ok().stdout;
    listed.lines().filter(|l| l.starts_with("reg-")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_store_stays_linearizable_through_crashes_partitions_and_packet_loss() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(!in_ci(), "the fault tests need root (ip netns, iptables)");
        return;
    }
    let network = Network::create(3);
    let flags = |address: &str| {
        vec!["--bind-address".to_string(), address.into(), "--advertise-address".into(), address.into()]
    };
    let (first_netns, first_address) = &network.servers[0];
    let first_flags = flags(first_address);
    let first_flags: Vec<&str> = first_flags.iter().map(String::as_str).collect();
    let mut servers = vec![TugServer::start_in_netns(first_netns, PORT, &first_flags)];
    let token = std::fs::read_to_string(servers[0].data_dir().join("server/token")).expect("token");
    let url = format!("https://{first_address}:{PORT}");
    for (netns, address) in &network.servers[1..] {
        let mut joining = flags(address);
        joining.extend(["--server".to_string(), url.clone(), "--token".into(), token.trim().into()]);
        let joining: Vec<&str> = joining.iter().map(String::as_str).collect();
        servers.push(TugServer::start_in_netns(netns, PORT, &joining));
    }

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let history = workload::History::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for id in 0..6 {
        let client = runtime.block_on(workload::client(&servers[id % 3].kubeconfig()));
        clients.push(runtime.spawn(workload::run(id, client, history.clone(), stop.clone())));
    }
    let streams = Arc::new(Mutex::new(Vec::new()));
    for server in &servers {
        let client = runtime.block_on(workload::client(&server.kubeconfig()));
        clients.push(runtime.spawn(watches::run(client, streams.clone(), stop.clone())));
    }
    let pause = || std::thread::sleep(Duration::from_secs(4));
    let mut report = Vec::new();
    pause();

    for (fault, leader_offset) in [("the leader killed", 0), ("a follower killed", 1)] {
        let killed = (leader(&servers) + leader_offset) % 3;
        servers[killed].kill();
        pause();
        servers[killed].restart();
        report.push((fault, serving(&servers, fault)));
    }

    for (fault, both_ways) in
        [("the leader cut off from both followers", true), ("the leader deaf to both followers (one way)", false)]
    {
        let cut = leader(&servers);
        for other in (0..3).filter(|i| *i != cut) {
            match both_ways {
                true => network.partition(cut, other),
                false => network.drop_from(cut, other),
            }
        }
        pause();
        network.heal();
        report.push((fault, serving(&servers, fault)));
    }

    let fault = "10% of packets lost";
    network.lose("0.1");
    pause();
    network.heal();
    report.push((fault, serving(&servers, fault)));

    let fault = "every link slowed to 1 Mbit/s (queueing delay up to 400 ms)";
    network.slow("1mbit", "400ms");
    pause();
    network.heal();
    report.push((fault, serving(&servers, fault)));

    let fault = "all three killed";
    for server in &mut servers {
        server.kill();
    }
    for server in &mut servers {
        server.spawn_again();
    }
    for server in &mut servers {
        server.wait_until_ready();
    }
    report.push((fault, serving(&servers, fault)));

    let fault = "a follower wiped and re-joined";
    let wiped = if leader(&servers) == 1 { 2 } else { 1 };
    servers[wiped].kill();
    for part in ["server", "agent"] {
        let _ = std::fs::remove_dir_all(servers[wiped].data_dir().join(part));
    }
    servers[wiped].restart();
    report.push((fault, serving(&servers, fault)));
    pause();

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        runtime.block_on(client).expect("a client");
    }
    // Last, a read of every register through every server.
    for server in &servers {
        let client = runtime.block_on(workload::client(&server.kubeconfig()));
        let api = kube::Api::namespaced(client, "default");
        for key in 0..workload::KEYS {
            let read = runtime.block_on(workload::read(&api, &history, &format!("reg-{key}")));
            assert!(read.is_some(), "a final read failed");
        }
    }

    let operations = history.operations();
    let unknown = operations.iter().filter(|op| op.ret.is_none()).count();
    let acknowledged =
        operations.iter().filter(|op| matches!(op.action, linearizability::Action::CasOk { .. })).count();
    println!(
        "faults injected: {}; operations checked: {}; acknowledged writes: {acknowledged}; indeterminate: {unknown}",
        report.len(),
        operations.len()
    );
    for (fault, took) in &report {
        println!("  after {fault}: every server took writes within {took:?}");
    }
    let streams = streams.lock().unwrap();
    let watched = watches::check(&streams, &operations, &history.written());
    println!("watch streams: {}; events checked: {watched:?}", streams.len());
    assert!(acknowledged > 50, "too few writes went through to mean anything: {acknowledged}");
    assert!(watched.as_ref().is_ok_and(|events| *events > acknowledged), "watches: {watched:?}");
    let violations = linearizability::violations(&operations);
    assert!(violations.is_empty(), "not linearizable: registers {violations:?}");
    let listed: Vec<String> = servers.iter().map(registers).collect();
    assert!(listed.iter().all(|c| *c == listed[0]), "the servers' registers differ: {listed:#?}");
    contents::wait_until_caught_up(&servers);
    for server in &mut servers {
        server.terminate();
    }
    let revisions: Vec<(i64, i64)> = servers.iter().map(|server| contents::revisions(server.data_dir())).collect();
    let common = revisions.iter().map(|r| r.0).min().expect("servers");
    let compacted = revisions.iter().map(|r| r.1).max().expect("servers");
    let last_write = history.written().iter().map(|w| w.2).max().unwrap_or(0) as i64;
    assert!(common >= last_write, "a server stopped before revision {last_write}, the last acknowledged write");
    let hashes: Vec<_> = servers.iter().map(|server| contents::hash(server.data_dir(), compacted, common)).collect();
    println!(
        "store contents after revision {compacted} up to {common} (history rows, hash) on each server: {hashes:?}"
    );
    assert!(hashes.iter().all(|h| *h == hashes[0]), "the servers' stores differ: {hashes:?}");
}
