//! DaemonSets on simulated nodes, driven as a user would with real kubectl: one pod per eligible node,
//! tainted nodes skipped, a joining node served, and a rolling image update.

mod common;

use common::{eventually, jsonpath, kubectl, kubectls, Simulator, TugServer};

const DAEMONSET: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: agent\n        image: agent:1\n";

fn nodes_of(bin: &std::path::Path, server: &TugServer) -> Vec<String> {
    let nodes = jsonpath(bin, server, &["pods", "-l", "app=agent"], "{.items[*].spec.nodeName}");
    let mut nodes: Vec<String> = nodes.split_whitespace().map(str::to_string).collect();
    nodes.sort();
    nodes
}

#[test]
fn a_daemonset_runs_on_every_eligible_node_and_rolls_out_updates() {
    let server = TugServer::start();
    let _plain = Simulator::start(&server, &["--nodes", "3"]);
    let _tainted = Simulator::start(
        &server,
        &["--nodes", "1", "--name-prefix", "edge-", "--node-taint", "dedicated=edge:NoSchedule"],
    );
    let bin = &kubectls()[0];
    eventually("four nodes", || {
        jsonpath(bin, &server, &["nodes"], "{.items[*].metadata.name}").split_whitespace().count() == 4
    });
    kubectl(bin, &server, &["apply", "-f", "-"], Some(DAEMONSET)).ok();
    let status = kubectl(bin, &server, &["rollout", "status", "ds/agent", "--timeout=60s"], None).ok();
    assert!(status.stdout.contains("successfully rolled out"), "{}", status.stdout);
    assert_eq!(nodes_of(bin, &server), ["sim-0", "sim-1", "sim-2"], "one per plain node; the tainted node is skipped");
    assert_eq!(jsonpath(bin, &server, &["ds", "agent"], "{.status.desiredNumberScheduled}"), "3");

    let _joining = Simulator::start(&server, &["--nodes", "1", "--name-prefix", "late-"]);
    eventually("the joining node gets its pod", || nodes_of(bin, &server).contains(&"late-0".to_string()));

    kubectl(bin, &server, &["set", "image", "ds/agent", "agent=agent:2"], None).ok();
    let status = kubectl(bin, &server, &["rollout", "status", "ds/agent", "--timeout=90s"], None).ok();
    assert!(status.stdout.contains("successfully rolled out"), "{}", status.stdout);
    eventually("every pod runs the new image, one per node", || {
        let images = jsonpath(bin, &server, &["pods", "-l", "app=agent"], "{.items[*].spec.containers[0].image}");
        images.split_whitespace().count() == 4 && images.split_whitespace().all(|i| i == "agent:2")
    });
    assert_eq!(nodes_of(bin, &server), ["late-0", "sim-0", "sim-1", "sim-2"]);
}
