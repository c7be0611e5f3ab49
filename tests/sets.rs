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

    let history = kubectl(bin, &server, &["rollout", "history", "ds/agent"], None).ok().stdout;
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
    kubectl(bin, &server, &["rollout", "undo", "ds/agent"], None).ok();
    kubectl(bin, &server, &["rollout", "status", "ds/agent", "--timeout=90s"], None).ok();
    eventually("undo brings the old image back on every node", || {
        let images = jsonpath(bin, &server, &["pods", "-l", "app=agent"], "{.items[*].spec.containers[0].image}");
        images.split_whitespace().count() == 4 && images.split_whitespace().all(|i| i == "agent:1")
    });
}

const STATEFULSET: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: web\n  replicas: 3\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: db\n        image: db:1\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests: {storage: 1Gi}\n";

fn created_at(bin: &std::path::Path, server: &TugServer, pod: &str) -> String {
    jsonpath(bin, server, &["pod", pod], "{.metadata.creationTimestamp}")
}

#[test]
fn a_statefulset_starts_in_order_keeps_its_claims_scales_down_from_the_top_and_updates_by_partition() {
    let server = TugServer::start();
    let _nodes = Simulator::start(&server, &["--nodes", "2", "--start-delay", "1s"]);
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["apply", "-f", "-"], Some(STATEFULSET)).ok();
    let status = kubectl(bin, &server, &["rollout", "status", "sts/web", "--timeout=90s"], None).ok();
    // apps/v1 defaults rollingUpdate.partition to 0, so kubectl reports a partitioned roll out.
    assert!(status.stdout.contains("roll out complete: 3 new pods have been updated"), "{}", status.stdout);
    // Each pod is created only once the one before it is ready, a second after its own creation.
    let (zero, one, two) =
        (created_at(bin, &server, "web-0"), created_at(bin, &server, "web-1"), created_at(bin, &server, "web-2"));
    assert!(zero < one && one < two, "{zero} {one} {two}");
    let ready_0 =
        jsonpath(bin, &server, &["pod", "web-0"], r#"{.status.conditions[?(@.type=="Ready")].lastTransitionTime}"#);
    assert!(ready_0 <= one, "web-1 waited for web-0 to be ready: {ready_0} {one}");
    let claims = jsonpath(bin, &server, &["pvc"], "{.items[*].metadata.name}");
    assert_eq!(claims, "data-web-0 data-web-1 data-web-2");
    assert_eq!(jsonpath(bin, &server, &["pod", "web-1"], "{.spec.hostname}.{.spec.subdomain}"), "web-1.web");

    kubectl(bin, &server, &["scale", "sts/web", "--replicas=2"], None).ok();
    eventually("web-2 goes first", || kubectl(bin, &server, &["get", "pod", "web-2"], None).code != 0);
    assert_eq!(jsonpath(bin, &server, &["pvc"], "{.items[*].metadata.name}"), claims, "claims are retained");

    kubectl(bin, &server, &["scale", "sts/web", "--replicas=3"], None).ok();
    kubectl(bin, &server, &["rollout", "status", "sts/web", "--timeout=90s"], None).ok();
    let partition = r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}"#;
    kubectl(bin, &server, &["patch", "sts", "web", "-p", partition], None).ok();
    kubectl(bin, &server, &["set", "image", "sts/web", "db=db:2"], None).ok();
    let status = kubectl(bin, &server, &["rollout", "status", "sts/web", "--timeout=90s"], None).ok();
    assert!(status.stdout.contains("partitioned roll out complete: 1 new pods have been updated"), "{}", status.stdout);
    let image = |pod: &str| jsonpath(bin, &server, &["pod", pod], "{.spec.containers[0].image}");
    eventually("only web-2 is updated", || image("web-2") == "db:2");
    assert_eq!((image("web-0"), image("web-1")), ("db:1".to_string(), "db:1".to_string()));

    // A pod below the partition that is recreated keeps the current (old) revision's template.
    let uid = jsonpath(bin, &server, &["pod", "web-0"], "{.metadata.uid}");
    // Without --wait=false kubectl can wait forever: a simulated node removes the pod at once, and if the
    // controller recreates web-0 before kubectl's watch lists it, kubectl never sees the name disappear.
    kubectl(bin, &server, &["delete", "pod", "web-0", "--wait=false"], None).ok();
    eventually("web-0 comes back", || {
        let now = jsonpath(bin, &server, &["pod", "web-0"], "{.metadata.uid}");
        !now.is_empty() && now != uid
    });
    assert_eq!(image("web-0"), "db:1");
    let history = kubectl(bin, &server, &["rollout", "history", "sts/web"], None).ok().stdout;
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");

    // whenScaled: Delete hands the claim of a scaled-away pod to it; the collector removes both.
    let retention = r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"}}}"#;
    kubectl(bin, &server, &["patch", "sts", "web", "-p", retention], None).ok();
    kubectl(bin, &server, &["scale", "sts/web", "--replicas=2"], None).ok();
    eventually("data-web-2 leaves with web-2", || {
        jsonpath(bin, &server, &["pvc"], "{.items[*].metadata.name}") == "data-web-0 data-web-1"
    });
}
