//! Endpoints and EndpointSlices on simulated nodes, driven as a user would with real kubectl: a
//! Service lists the ready pods it selects, by the port its named targetPort resolves to, moves a pod
//! that stops being ready to the not-ready addresses, follows scaling, and takes its endpoints with it
//! when it is deleted.

mod common;

use common::{eventually, jsonpath, kubectl, kubectls, Simulator, TugServer};

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: app\n        image: nginx\n        ports:\n        - {name: http, containerPort: 8080}\n";
const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {name: web, port: 80, targetPort: http}\n";

fn sorted(words: String) -> Vec<String> {
    let mut words: Vec<String> = words.split_whitespace().map(str::to_string).collect();
    words.sort();
    words
}

#[test]
fn a_service_lists_its_ready_pods_and_follows_them() {
    let server = TugServer::start();
    let _nodes = Simulator::start(&server, &["--nodes", "3"]);
    for bin in &kubectls() {
        kubectl(bin, &server, &["apply", "-f", "-"], Some(DEPLOYMENT)).ok();
        kubectl(bin, &server, &["apply", "-f", "-"], Some(SERVICE)).ok();
        let pod_ips = || sorted(jsonpath(bin, &server, &["pods", "-l", "app=web"], "{.items[*].status.podIP}"));
        eventually("three pods have addresses", || pod_ips().len() == 3);
        let ready_ips = || sorted(jsonpath(bin, &server, &["endpoints", "web"], "{.subsets[*].addresses[*].ip}"));
        eventually("the Endpoints list the three pods", || ready_ips() == pod_ips());
        assert_eq!(jsonpath(bin, &server, &["endpoints", "web"], "{.subsets[0].ports[0].port}"), "8080");
        let slices = ["endpointslices", "-l", "kubernetes.io/service-name=web"];
        let slice_ready = || jsonpath(bin, &server, &slices, "{.items[*].endpoints[*].conditions.ready}");
        eventually("the slice has them too, all ready", || sorted(slice_ready()) == ["true", "true", "true"]);
        assert_eq!(jsonpath(bin, &server, &slices, "{.items[0].ports[0].port}"), "8080");
        assert_eq!(jsonpath(bin, &server, &slices, "{.items[0].metadata.ownerReferences[0].kind}"), "Service");

        // One pod stops being ready: it moves to notReadyAddresses and its slice condition follows.
        let sick = jsonpath(bin, &server, &["pods", "-l", "app=web"], "{.items[0].metadata.name}");
        let sick_ip = jsonpath(bin, &server, &["pod", &sick], "{.status.podIP}");
        kubectl(bin, &server, &["annotate", "pod", &sick, "tug.dev/simulate-ready=false"], None).ok();
        eventually("the sick pod is listed as not ready", || {
            jsonpath(bin, &server, &["endpoints", "web"], "{.subsets[*].notReadyAddresses[*].ip}") == sick_ip
                && ready_ips().len() == 2
        });
        eventually("its slice condition says so", || sorted(slice_ready()) == ["false", "true", "true"]);

        // Published not-ready addresses count as ready.
        kubectl(bin, &server, &["patch", "svc", "web", "-p", r#"{"spec":{"publishNotReadyAddresses":true}}"#], None)
            .ok();
        eventually("all three are ready when not-ready addresses are published", || ready_ips().len() == 3);

        kubectl(bin, &server, &["scale", "deployment/web", "--replicas=1"], None).ok();
        eventually("scaling down removes addresses", || ready_ips().len() == 1 && pod_ips().len() == 1);

        kubectl(bin, &server, &["delete", "svc", "web"], None).ok();
        eventually("the service's Endpoints and slices go with it", || {
            kubectl(bin, &server, &["get", "endpoints", "web"], None).code != 0
                && jsonpath(bin, &server, &slices, "{.items[*].metadata.name}").is_empty()
        });
        kubectl(bin, &server, &["delete", "deployment", "web"], None).ok();
        eventually("the pods are gone", || pod_ips().is_empty());
    }
}
