//! The server's own node on the real runtime (root, containerd, runc, CNI plugins): containerd started
//! and supervised by tug, the air-gapped images imported, the Node registered with the machine's
//! capacity and kept Ready through its Lease and status.

mod common;

use std::time::Duration;

use common::node;
use common::{eventually_within, jsonpath, kubectl, kubectls, TugServer};

fn containerd_pid(server: &TugServer) -> Option<u32> {
    let config = server.data_dir().join("agent/containerd/config.toml");
    let output = std::process::Command::new("pgrep")
        .args(["-f", &format!("containerd --config {}", config.display())])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).lines().next()?.trim().parse().ok()
}

#[test]
fn the_servers_node_runs_containerd_imports_the_images_and_becomes_ready() {
    if !node::available() {
        return;
    }
    let mut server =
        TugServer::start_with_agent(&["--node-name", "edge-test", "--node-ip", "127.0.0.1"], node::images());
    let bin = &kubectls()[0];
    let wait = Duration::from_secs(60);
    eventually_within(wait, "the node is Ready", || {
        kubectl(
            bin,
            &server,
            &["get", "node", "edge-test", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"],
            None,
        )
        .stdout
            == "True"
    });
    let node = |path: &str| jsonpath(bin, &server, &["node", "edge-test"], path);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(node("{.status.capacity.cpu}"), cpus.to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let total_kib = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).expect("MemTotal");
    assert_eq!(node("{.status.capacity.memory}"), format!("{}Ki", total_kib.trim().trim_end_matches(" kB").trim()));
    assert!(node("{.status.nodeInfo.containerRuntimeVersion}").starts_with("containerd://"));
    assert_eq!(node("{.status.addresses[?(@.type==\"InternalIP\")].address}"), "127.0.0.1");
    assert_eq!(node("{.metadata.labels.node-role\\.kubernetes\\.io/control-plane}"), "true");
    assert!(!node("{.spec.podCIDR}").is_empty());

    // The images from the air-gap directory are in the CRI's namespace.
    let images = node::ctr(server.data_dir(), &["images", "ls", "-q"]);
    assert!(images.contains("tug.local/pause:1") && images.contains("tug.local/busybox:1"), "{images}");

    // The Lease is renewed.
    let renewed = jsonpath(bin, &server, &["lease", "-n", "kube-node-lease", "edge-test"], "{.spec.renewTime}");
    eventually_within(wait, "the lease is renewed", || {
        jsonpath(bin, &server, &["lease", "-n", "kube-node-lease", "edge-test"], "{.spec.renewTime}") != renewed
    });

    // A containerd that dies is started again.
    let first = containerd_pid(&server).expect("containerd runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill containerd");
    eventually_within(wait, "containerd is restarted and answers", || {
        containerd_pid(&server).is_some_and(|pid| pid != first)
            && node::ctr(server.data_dir(), &["version"]).contains("Server:")
    });

    // Stopping tug stops its containerd.
    let status = server.terminate().expect("server exit status");
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(containerd_pid(&server).is_none(), "containerd outlived tug");
}
