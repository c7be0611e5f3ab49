//! The scheduler and the simulated nodes, driven with real kubectl against the real binary: two
//! `tug simulate` processes give three nodes, one of them tainted.

mod common;

use common::{eventually, jsonpath, kubectl, kubectls, Simulator, TugServer};

/// Two plain nodes (sim-0, sim-1, 2 cpu each) and one tainted node (edge-0).
fn cluster() -> (TugServer, Simulator, Simulator) {
    let server = TugServer::start();
    let plain = Simulator::start(&server, &["--nodes", "2", "--cpu", "2", "--node-label", "tier=plain"]);
    let tainted = Simulator::start(
        &server,
        &["--nodes", "1", "--name-prefix", "edge-", "--cpu", "2", "--node-taint", "dedicated=edge:NoSchedule"],
    );
    let bin = &kubectls()[0];
    eventually("three nodes are Ready", || {
        let ready = jsonpath(bin, &server, &["nodes"], r#"{.items[*].status.conditions[?(@.type=="Ready")].status}"#);
        ready.split_whitespace().filter(|s| *s == "True").count() == 3
    });
    (server, plain, tainted)
}

fn node_of(bin: &std::path::Path, server: &TugServer, pod: &str) -> String {
    jsonpath(bin, server, &["pod", pod], "{.spec.nodeName}")
}

fn phase(bin: &std::path::Path, server: &TugServer, pod: &str) -> String {
    jsonpath(bin, server, &["pod", pod], "{.status.phase}")
}

fn pod_yaml(name: &str, cpu: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  containers:\n  - name: app\n    image: nginx\n    resources:\n      requests:\n        cpu: {cpu}\n"
    )
}

#[test]
fn pods_are_bound_to_fitting_nodes_and_run() {
    let (server, _plain, _tainted) = cluster();
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["run", "web", "--image=nginx"], None).ok();
    eventually("web runs", || phase(bin, &server, "web") == "Running");
    assert!(node_of(bin, &server, "web").starts_with("sim-"), "the tainted node is not for plain pods");
    let wide = kubectl(bin, &server, &["get", "pod", "web", "-o", "wide"], None).ok().stdout;
    assert!(wide.contains("1/1") && wide.contains("Running"), "{wide}");

    // nodeSelector, and a toleration that lets a pod onto the tainted node.
    let pinned = pod_yaml("pinned", "100m", "  nodeSelector: {kubernetes.io/hostname: sim-1}\n");
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&pinned)).ok();
    let tolerant = pod_yaml(
        "tolerant",
        "100m",
        "  nodeSelector: {kubernetes.io/hostname: edge-0}\n  tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]\n",
    );
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&tolerant)).ok();
    eventually("pinned and tolerant run", || {
        phase(bin, &server, "pinned") == "Running" && phase(bin, &server, "tolerant") == "Running"
    });
    assert_eq!(node_of(bin, &server, "pinned"), "sim-1");
    assert_eq!(node_of(bin, &server, "tolerant"), "edge-0");

    // Requests fill the nodes: two 1500m pods take one plain node each.
    for name in ["big-a", "big-b"] {
        kubectl(bin, &server, &["apply", "-f", "-"], Some(&pod_yaml(name, "1500m", ""))).ok();
    }
    eventually("both big pods run", || {
        phase(bin, &server, "big-a") == "Running" && phase(bin, &server, "big-b") == "Running"
    });
    assert_ne!(node_of(bin, &server, "big-a"), node_of(bin, &server, "big-b"));

    // Scheduled pods carry the Scheduled event, as `kubectl describe` shows it.
    let described = kubectl(bin, &server, &["describe", "pod", "pinned"], None).ok().stdout;
    assert!(described.contains("Successfully assigned default/pinned to sim-1"), "{described}");
    assert!(described.contains("node.kubernetes.io/not-ready:NoExecute op=Exists for 300s"), "{described}");
}

#[test]
fn a_pod_nothing_fits_says_why_and_lands_once_room_appears() {
    let (server, _plain, _tainted) = cluster();
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&pod_yaml("huge", "3", ""))).ok();
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: edge}, 2 Insufficient cpu.";
    eventually("describe shows FailedScheduling", || {
        let described = kubectl(bin, &server, &["describe", "pod", "huge"], None).ok().stdout;
        described.contains("FailedScheduling") && described.contains(expected)
    });
    let condition =
        jsonpath(bin, &server, &["pod", "huge"], r#"{.status.conditions[?(@.type=="PodScheduled")].reason}"#);
    assert_eq!(condition, "Unschedulable");
    assert_eq!(phase(bin, &server, "huge"), "Pending");

    // A bigger node joins: the waiting pod is tried again and lands there.
    let _large = Simulator::start(&server, &["--nodes", "1", "--name-prefix", "large-", "--cpu", "8"]);
    eventually("huge runs on the large node", || phase(bin, &server, "huge") == "Running");
    assert_eq!(node_of(bin, &server, "huge"), "large-0");
}

#[test]
fn cordoned_nodes_take_no_new_pods_and_deleted_pods_go_away() {
    let (server, _plain, _tainted) = cluster();
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["cordon", "sim-0"], None).ok();
    for i in 0..4 {
        kubectl(bin, &server, &["run", &format!("p{i}"), "--image=nginx"], None).ok();
    }
    eventually("all four run", || (0..4).all(|i| phase(bin, &server, &format!("p{i}")) == "Running"));
    assert!(
        (0..4).all(|i| node_of(bin, &server, &format!("p{i}")) == "sim-1"),
        "cordoned sim-0 and tainted edge-0 are skipped"
    );
    // A graceful delete completes: the simulated kubelet removes the pod once it is marked.
    kubectl(bin, &server, &["delete", "pod", "p0", "--wait=true", "--timeout=20s"], None).ok();
    assert_ne!(kubectl(bin, &server, &["get", "pod", "p0"], None).code, 0);
}

#[test]
fn pods_that_exit_finish_with_their_exit_code() {
    let (server, _plain, _tainted) = cluster();
    let bin = &kubectls()[0];
    for (name, code) in [("ok", "0"), ("broken", "3")] {
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations: {{tug.dev/simulate-exit-code: \"{code}\"}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: busybox\n"
        );
        kubectl(bin, &server, &["apply", "-f", "-"], Some(&manifest)).ok();
    }
    eventually("ok succeeds and broken fails", || {
        phase(bin, &server, "ok") == "Succeeded" && phase(bin, &server, "broken") == "Failed"
    });
    let code = jsonpath(bin, &server, &["pod", "broken"], "{.status.containerStatuses[0].state.terminated.exitCode}");
    assert_eq!(code, "3");
}

#[test]
fn simulate_refuses_bad_flags_in_one_line() {
    for (args, names) in [
        (&["--cpu", "lots"][..], "--cpu"),
        (&["--node-taint", "k=v:Sometimes"][..], "--node-taint"),
        (&["--name-prefix", "Bad_"][..], "--name-prefix"),
    ] {
        let out = std::process::Command::new(common::server_binary())
            .arg("simulate")
            .args(args)
            .output()
            .expect("run tug simulate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(names), "{stderr}");
    }
}

#[test]
fn a_silent_node_goes_unknown_is_tainted_and_its_pods_are_evicted_after_their_toleration() {
    let server = TugServer::start_with(&["--node-monitor-grace-period", "3s"]);
    let bin = &kubectls()[0];
    let mut lost = Simulator::start(&server, &["--nodes", "1", "--name-prefix", "lost-", "--heartbeat", "1s"]);
    eventually("lost-0 has a podCIDR", || !jsonpath(bin, &server, &["node", "lost-0"], "{.spec.podCIDR}").is_empty());
    let cidr = jsonpath(bin, &server, &["node", "lost-0"], "{.spec.podCIDR}");
    assert!(cidr.starts_with("10.42.") && cidr.ends_with("/24"), "{cidr}");
    let quick = pod_yaml(
        "quick",
        "100m",
        "  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}]\n",
    );
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&quick)).ok();
    kubectl(bin, &server, &["run", "patient", "--image=nginx"], None).ok();
    eventually("both run", || phase(bin, &server, "quick") == "Running" && phase(bin, &server, "patient") == "Running");
    let ip = jsonpath(bin, &server, &["pod", "quick"], "{.status.podIP}");
    let prefix = cidr.trim_end_matches("0/24");
    assert!(ip.starts_with(prefix), "pod IP {ip} from the node's {cidr}");

    lost.stop();
    // 60 s: under a full parallel test run on 2 cores, a 3 s grace can take longer than 30 s to act on.
    let marked = common::within(std::time::Duration::from_secs(60), || {
        let ready = jsonpath(bin, &server, &["node", "lost-0"], r#"{.status.conditions[?(@.type=="Ready")].status}"#);
        let taints = jsonpath(bin, &server, &["node", "lost-0"], "{.spec.taints[*].key}");
        ready == "Unknown" && taints.contains("node.kubernetes.io/unreachable")
    });
    if !marked {
        let node = kubectl(bin, &server, &["get", "node", "lost-0", "-o", "yaml"], None).stdout;
        let lease = kubectl(bin, &server, &["get", "lease", "-A", "-o", "yaml"], None).stdout;
        panic!("lost-0 was not marked Unknown and unreachable:\n{node}\n{lease}\n{}", server.log());
    }
    let listed = kubectl(bin, &server, &["get", "node", "lost-0"], None).ok().stdout;
    assert!(listed.contains("NotReady"), "{listed}");
    eventually("the pods are marked not ready", || {
        jsonpath(bin, &server, &["pod", "patient"], r#"{.status.conditions[?(@.type=="Ready")].status}"#) == "False"
    });
    eventually("quick is evicted after its 2 s toleration", || {
        !jsonpath(bin, &server, &["pod", "quick"], "{.metadata.deletionTimestamp}").is_empty()
    });
    let described = kubectl(bin, &server, &["describe", "pod", "quick"], None).ok().stdout;
    assert!(described.contains("TaintManagerEviction"), "{described}");
    assert!(
        jsonpath(bin, &server, &["pod", "patient"], "{.metadata.deletionTimestamp}").is_empty(),
        "patient tolerates the unreachable taint for the default 300 s"
    );

    // The node comes back: Ready again and untainted.
    let _back = Simulator::start(&server, &["--nodes", "1", "--name-prefix", "lost-", "--heartbeat", "1s"]);
    eventually("lost-0 is Ready and untainted again", || {
        let ready = jsonpath(bin, &server, &["node", "lost-0"], r#"{.status.conditions[?(@.type=="Ready")].status}"#);
        ready == "True" && jsonpath(bin, &server, &["node", "lost-0"], "{.spec.taints}").is_empty()
    });
    // Deleting the node removes its pods.
    kubectl(bin, &server, &["delete", "node", "lost-0"], None).ok();
    eventually("patient is gone with its node", || kubectl(bin, &server, &["get", "pod", "patient"], None).code != 0);
}

#[test]
fn anti_affinity_spreads_a_deployment_and_pod_affinity_follows_it() {
    let (server, _plain, _tainted) = cluster();
    let bin = &kubectls()[0];
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: solo\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: solo}\n  template:\n    metadata:\n      labels: {app: solo}\n    spec:\n      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - topologyKey: kubernetes.io/hostname\n            labelSelector: {matchLabels: {app: solo}}\n      containers:\n      - name: app\n        image: nginx\n";
    kubectl(bin, &server, &["apply", "-f", "-"], Some(deployment)).ok();
    let pods_of = |selector: &str, path: &str| jsonpath(bin, &server, &["pods", "-l", selector], path);
    eventually("two replicas run, one per plain node, and the third waits", || {
        let phases = pods_of("app=solo", "{.items[*].status.phase}");
        phases.split_whitespace().filter(|p| *p == "Running").count() == 2
            && phases.split_whitespace().filter(|p| *p == "Pending").count() == 1
    });
    let nodes = pods_of("app=solo", "{.items[*].spec.nodeName}");
    let mut nodes: Vec<&str> = nodes.split_whitespace().collect();
    nodes.sort();
    assert_eq!(nodes, ["sim-0", "sim-1"]);
    let message = pods_of("app=solo", r#"{.items[*].status.conditions[?(@.reason=="Unschedulable")].message}"#);
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: edge}, 2 node(s) didn't match pod anti-affinity rules."
    );

    let follower = pod_yaml(
        "follower",
        "100m",
        "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: kubernetes.io/hostname\n        labelSelector: {matchLabels: {app: solo}}\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: tier\n        labelSelector: {matchLabels: {app: nothing-matches}}\n",
    );
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&follower)).ok();
    eventually("the follower runs beside a solo pod", || phase(bin, &server, "follower") == "Running");
    assert!(nodes.contains(&node_of(bin, &server, "follower").as_str()));

    // A namespaceSelector with labels reaches the solo pods from another namespace.
    kubectl(bin, &server, &["label", "namespace", "default", "team=solo-owners"], None).ok();
    kubectl(bin, &server, &["create", "namespace", "visitors"], None).ok();
    eventually("visitors has its default ServiceAccount (pods need it)", || {
        kubectl(bin, &server, &["get", "serviceaccount", "default", "-n", "visitors"], None).code == 0
    });
    let guest = pod_yaml(
        "guest",
        "100m",
        "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: kubernetes.io/hostname\n        labelSelector: {matchLabels: {app: solo}}\n        namespaceSelector: {matchLabels: {team: solo-owners}}\n",
    );
    kubectl(bin, &server, &["apply", "-n", "visitors", "-f", "-"], Some(&guest)).ok();
    let guest_at = |path: &str| jsonpath(bin, &server, &["pod", "guest", "-n", "visitors"], path);
    eventually("the guest runs beside a solo pod", || guest_at("{.status.phase}") == "Running");
    assert!(nodes.contains(&guest_at("{.spec.nodeName}").as_str()));

    kubectl(bin, &server, &["scale", "deployment/solo", "--replicas=2"], None).ok();
    eventually("scaled down, nothing waits", || !pods_of("app=solo", "{.items[*].status.phase}").contains("Pending"));
}
