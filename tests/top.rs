//! `kubectl top` (root, containerd): metrics.k8s.io served from the kubelet's samples of the node and
//! of its containers, for nodes and pods, by name and by label.

mod common;

use std::time::Duration;

use common::{eventually_within, jsonpath, kubectl, kubectls, node};

#[test]
fn kubectl_top_shows_the_node_and_its_pods() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let server = node::ready_server();
    let bin = &kubectls()[0];
    let busy = "while true; do :; done";
    kubectl(
        bin,
        &server,
        &["run", "busy", "--image=tug.local/busybox:1", "--labels=app=busy", "--", "sh", "-c", busy],
        None,
    )
    .ok();
    eventually_within(Duration::from_secs(60), "busy runs", || {
        jsonpath(bin, &server, &["pod", "busy"], "{.status.phase}") == "Running"
    });
    let discovery = kubectl(bin, &server, &["api-resources", "--api-group=metrics.k8s.io"], None).ok().stdout;
    assert!(discovery.contains("PodMetrics") && discovery.contains("NodeMetrics"), "{discovery}");

    // Two samples (10 s apart) make a rate.
    let mut row = String::new();
    eventually_within(Duration::from_secs(40), "top pod has a row for busy", || {
        row = kubectl(bin, &server, &["top", "pod", "-l", "app=busy", "--no-headers"], None).stdout;
        row.starts_with("busy ")
    });
    let columns: Vec<&str> = row.split_whitespace().collect();
    let millicores: u32 = columns[1].trim_end_matches('m').parse().expect("CPU in millicores");
    assert!(millicores >= 500, "a busy loop uses most of a core: {row}");
    assert!(columns[2].ends_with("Mi"), "{row}");

    let nodes = kubectl(bin, &server, &["top", "node", "--no-headers"], None).ok().stdout;
    assert!(nodes.starts_with("edge-test ") && nodes.contains('%'), "{nodes}");
    let missing =
        kubectl(bin, &server, &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope"], None);
    assert!(missing.code != 0 && missing.stderr.contains("NotFound"), "{}", missing.stderr);
}
