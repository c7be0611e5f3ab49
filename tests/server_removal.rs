//! Removing a server by deleting its Node, as with k3s (root, containerd): three servers, the third
//! with its in-process agent and so a Node. Deleting that Node while another server is down is refused
//! (the two voters left would have no quorum) and the Node waits, Terminating, with a warning event;
//! once the down server is back, the deleted Node's server leaves the group and the Node goes; the
//! removed server exits and refuses to start again until its store directory is cleared. A server
//! removed while it was down learns it from the others when it restarts, and exits the same way.

mod common;

use std::time::Duration;

use common::{eventually_within, kubectl, kubectls, metric, node, TugServer};

/// `tug_raft_voters` as `server` reports it.
fn voters(server: &TugServer) -> String {
    metric(server, "tug_raft_voters").unwrap_or_default()
}

fn node_field(server: &TugServer, path: &str) -> String {
    let path = format!("jsonpath={path}");
    kubectl(&kubectls()[0], server, &["get", "node", "edge-test", "-o", &path], None).stdout
}

const REMOVED: &str = "this server was removed from the cluster";

/// Three servers, the third with its node agent, its Node marked as a server's.
fn three_servers() -> [TugServer; 3] {
    let first = TugServer::start();
    let token = std::fs::read_to_string(first.data_dir().join("server/token")).expect("token");
    let url = format!("https://127.0.0.1:{}", first.port);
    let join = ["--server", url.as_str(), "--token", token.trim()];
    let second = TugServer::start_with(&join);
    let third = node::ready_server_with(&join);
    eventually_within(Duration::from_secs(20), "the third server's node is marked as a server", || {
        !node_field(&first, r#"{.metadata.annotations.tug\.dev/server-id}"#).is_empty()
            && node_field(&first, "{.metadata.finalizers}").contains("tug.dev/server-member")
    });
    assert_eq!(voters(&first), "3");
    [first, second, third]
}

/// `server`, stopped after it said it was removed, refuses to start again and says why again.
fn refuses_to_start_again(server: &mut TugServer) {
    server.spawn_again();
    eventually_within(Duration::from_secs(30), "the removed server refuses to start", || {
        server.exited().is_some_and(|status| !status.success())
    });
    assert!(server.log().matches(REMOVED).count() >= 2, "it says why again:\n{}", server.log());
}

#[test]
fn deleting_a_servers_node_removes_it_from_the_cluster_once_that_is_safe() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let bin = &kubectls()[0];
    let [first, mut second, third] = three_servers();

    second.kill();
    kubectl(bin, &first, &["delete", "node", "edge-test", "--wait=false"], None).ok();
    eventually_within(Duration::from_secs(30), "the removal is refused with a warning event", || {
        let selector = "involvedObject.name=edge-test,reason=RemovingServerRefused";
        let events = kubectl(bin, &first, &["get", "events", "--field-selector", selector, "-o", "name"], None);
        !events.stdout.trim().is_empty()
    });
    assert_eq!(voters(&first), "3", "no voter was removed");
    assert!(!node_field(&first, "{.metadata.deletionTimestamp}").is_empty(), "the node waits, Terminating");

    second.restart();
    eventually_within(Duration::from_secs(30), "the server left the group", || voters(&first) == "2");
    eventually_within(Duration::from_secs(30), "the node is gone", || {
        kubectl(bin, &first, &["get", "node", "edge-test"], None).stderr.contains("NotFound")
    });
    eventually_within(Duration::from_secs(10), "the other server agrees", || voters(&second) == "2");
    kubectl(bin, &second, &["create", "cm", "after-removal"], None).ok();

    // The removed server notices, exits, and will not start again into a group it is not in.
    let mut third = third;
    eventually_within(Duration::from_secs(30), "the removed server exits", || third.exited().is_some());
    assert!(third.log().contains(REMOVED), "it says why:\n{}", third.log());
    refuses_to_start_again(&mut third);
}

#[test]
fn a_server_removed_while_down_exits_when_it_restarts() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let bin = &kubectls()[0];
    let [first, second, mut third] = three_servers();
    third.kill();
    kubectl(bin, &first, &["delete", "node", "edge-test", "--wait=false"], None).ok();
    eventually_within(Duration::from_secs(30), "the down server left the group", || {
        voters(&first) == "2" && voters(&second) == "2"
    });

    // It restarts with the membership it knew, finds no leader, asks the others, and exits.
    third.spawn_again();
    eventually_within(Duration::from_secs(30), "the server removed while down exits", || {
        third.exited().is_some_and(|status| !status.success())
    });
    assert!(third.log().contains(REMOVED), "it says why:\n{}", third.log());
    refuses_to_start_again(&mut third);
}
