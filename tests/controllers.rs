//! The server's control loops, driven as a user would: real kubectl against the real binary.

mod common;

use std::time::Duration;

use common::{eventually, eventually_within, jsonpath, kubectl, kubectls, TugServer};

#[test]
fn every_namespace_gets_a_default_service_account_and_the_root_ca() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["create", "namespace", "team-a"], None).ok();
    eventually("team-a has its default ServiceAccount", || {
        kubectl(bin, &server, &["get", "serviceaccount", "default", "-n", "team-a"], None).code == 0
    });
    let ca = std::fs::read_to_string(server.data_dir().join("server/tls/server-ca.crt")).expect("CA");
    let published = || jsonpath(bin, &server, &["configmap", "kube-root-ca.crt", "-n", "team-a"], "{.data.ca\\.crt}");
    eventually("team-a has the root CA", || {
        kubectl(bin, &server, &["get", "cm", "kube-root-ca.crt", "-n", "team-a"], None).code == 0
    });
    assert_eq!(published().trim(), ca.trim());
    // Deleted or edited, both come back as they were.
    kubectl(bin, &server, &["delete", "serviceaccount", "default", "-n", "team-a"], None).ok();
    kubectl(
        bin,
        &server,
        &["patch", "cm", "kube-root-ca.crt", "-n", "team-a", "-p", r#"{"data":{"ca.crt":"forged"}}"#],
        None,
    )
    .ok();
    eventually("the ServiceAccount is recreated", || {
        kubectl(bin, &server, &["get", "serviceaccount", "default", "-n", "team-a"], None).code == 0
    });
    eventually("the CA is restored", || published().trim() == ca.trim());
}

const REPLICA_SET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
"#;

/// Names of the pods labelled app=web, and how many of them `web` controls. (Pods on no node are deleted
/// at once, so none lingers terminating.)
fn web_pods(bin: &std::path::Path, server: &TugServer) -> (Vec<String>, usize) {
    let out = jsonpath(
        bin,
        server,
        &["pods", "-l", "app=web"],
        "{range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
    );
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    let owned = lines.iter().filter(|l| l.ends_with(" web")).count();
    (lines.iter().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect(), owned)
}

#[test]
fn a_replica_set_keeps_its_pods_adopts_orphans_and_scales_down() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["apply", "-f", "-"], Some(REPLICA_SET)).ok();
    eventually("3 pods owned by web", || {
        let (now, owned) = web_pods(bin, &server);
        now.len() == 3 && owned == 3
    });
    eventually("status.replicas is 3", || jsonpath(bin, &server, &["rs", "web"], "{.status.replicas}") == "3");
    assert_eq!(jsonpath(bin, &server, &["rs", "web"], "{.status.observedGeneration}"), "1");

    // A deleted pod is replaced.
    let (names, _) = web_pods(bin, &server);
    kubectl(bin, &server, &["delete", "pod", &names[0]], None).ok();
    eventually("a replacement pod", || {
        let (now, owned) = web_pods(bin, &server);
        owned == 3 && now.len() == 3 && !now.contains(&names[0])
    });

    // A matching pod nobody controls is adopted; the surplus is then deleted.
    kubectl(bin, &server, &["run", "stray", "--image=nginx", "--labels=app=web"], None).ok();
    eventually("3 pods again, all owned", || {
        let (now, owned) = web_pods(bin, &server);
        now.len() == 3 && owned == 3
    });

    // Scaling down deletes pods; scaling to zero deletes them all.
    kubectl(bin, &server, &["scale", "rs", "web", "--replicas=1"], None).ok();
    eventually("1 pod", || web_pods(bin, &server).0.len() == 1);
    kubectl(bin, &server, &["scale", "rs", "web", "--replicas=0"], None).ok();
    eventually("no pods", || web_pods(bin, &server).0.is_empty());
    eventually("status.replicas is 0", || jsonpath(bin, &server, &["rs", "web"], "{.status.replicas}") == "0");
}

#[test]
fn the_loops_run_under_a_lease_that_a_restarted_server_keeps_and_an_intruder_interrupts() {
    let mut server = TugServer::start();
    let bin = &kubectls()[0];
    let identity = std::fs::read_to_string(server.data_dir().join("server").join("identity")).expect("identity");
    let holder = |server: &TugServer, lease: &str| {
        jsonpath(bin, server, &["lease", "-n", "kube-system", lease], "{.spec.holderIdentity}")
    };
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        eventually("the server leads", || holder(&server, lease) == identity);
    }

    let intruder = r#"{"spec":{"holderIdentity":"intruder"}}"#;
    kubectl(
        bin,
        &server,
        &["patch", "lease", "-n", "kube-system", "kube-controller-manager", "--type=merge", "-p", intruder],
        None,
    )
    .ok();
    eventually_within(Duration::from_secs(60), "the server stops, waits the lease out, then leads again", || {
        server.log().contains("lost the lease") && holder(&server, "kube-controller-manager") == identity
    });
    let transitions =
        jsonpath(bin, &server, &["lease", "-n", "kube-system", "kube-controller-manager"], "{.spec.leaseTransitions}");
    assert_eq!(transitions, "1", "taken back from the intruder once");

    server.kill_and_restart();
    assert_eq!(holder(&server, "kube-controller-manager"), identity, "the same server keeps its identity");
    kubectl(bin, &server, &["create", "deployment", "after-restart", "--image=nginx", "--replicas=0"], None).ok();
    // The lease lasts 15 s: acting well before then shows the server took its own lease straight back.
    eventually_within(Duration::from_secs(10), "the restarted server's controllers act at once", || {
        jsonpath(bin, &server, &["deployment", "after-restart"], "{.status.observedGeneration}") == "1"
    });
}

#[test]
fn each_node_gets_its_own_pod_cidr_and_a_deleted_nodes_block_is_reused() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    let cidr = |node: &str| jsonpath(bin, &server, &["node", node], "{.spec.podCIDR}");
    let mut first = common::Simulator::start(&server, &["--nodes", "2"]);
    eventually("both nodes get a block", || !cidr("sim-0").is_empty() && !cidr("sim-1").is_empty());
    let mut blocks = [cidr("sim-0"), cidr("sim-1")];
    blocks.sort();
    assert_eq!(blocks, ["10.42.0.0/24", "10.42.1.0/24"]);
    let freed = cidr("sim-0");

    first.stop();
    kubectl(bin, &server, &["delete", "node", "sim-0"], None).ok();
    let _later = common::Simulator::start(&server, &["--nodes", "1", "--name-prefix", "later-"]);
    eventually("the new node gets a block", || !cidr("later-0").is_empty());
    assert_eq!(cidr("later-0"), freed, "the deleted node's block is handed out again");
}

#[test]
fn a_replication_controller_keeps_its_pods_and_scales() {
    let server = TugServer::start();
    let _nodes = common::Simulator::start(&server, &["--nodes", "2"]);
    let rc = "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: legacy\nspec:\n  replicas: 3\n  selector: {app: legacy}\n  template:\n    metadata:\n      labels: {app: legacy}\n    spec:\n      containers:\n      - name: app\n        image: nginx\n";
    for bin in &kubectls() {
        kubectl(bin, &server, &["apply", "-f", "-"], Some(rc)).ok();
        eventually("three ready replicas", || {
            jsonpath(bin, &server, &["rc", "legacy"], "{.status.readyReplicas}") == "3"
        });
        let pods =
            jsonpath(bin, &server, &["pods", "-l", "app=legacy"], "{.items[*].metadata.ownerReferences[0].kind}");
        assert_eq!(pods, "ReplicationController ReplicationController ReplicationController");
        kubectl(bin, &server, &["scale", "rc", "legacy", "--replicas=1"], None).ok();
        eventually("one replica left", || {
            jsonpath(bin, &server, &["pods", "-l", "app=legacy"], "{.items[*].metadata.name}")
                .split_whitespace()
                .count()
                == 1
        });
        let table = kubectl(bin, &server, &["get", "rc", "legacy"], None).ok().stdout;
        assert!(
            table.contains("legacy") && table.lines().nth(1).is_some_and(|l| l.split_whitespace().nth(1) == Some("1")),
            "{table}"
        );
        kubectl(bin, &server, &["delete", "rc", "legacy"], None).ok();
        eventually("its pods go with it", || {
            jsonpath(bin, &server, &["pods", "-l", "app=legacy"], "{.items[*].metadata.name}").is_empty()
        });
    }
}
