//! Printers for the core/v1 cluster and network kinds: namespaces, nodes, services and endpoints.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::{age, at, col, format_labels, int_at, list_at, load_balancer_text, name, opt_str, str_at, wide};
use super::{Printer, AGE, NAME};

const SVC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
const SVC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const SVC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
const SVC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const SVC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
const EP_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
const NODE_KUBELET: &str = "Kubelet Version reported by the node.";
const NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
const NODE_OS_IMAGE: &str = "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
const NODE_KERNEL: &str = "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
const NODE_RUNTIME: &str =
    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";

pub(super) const NAMESPACE: Printer = Printer {
    columns: &[NAME, col("Status", "string", "The status of the namespace"), AGE],
    cells: |ns, now| vec![name(ns), Value::from(str_at(ns, "/status/phase")), age(ns, now)],
};

pub(super) const NODE: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", NODE_KUBELET),
        wide("Internal-IP", "string", NODE_ADDRESSES),
        wide("External-IP", "string", NODE_ADDRESSES),
        wide("OS-Image", "string", NODE_OS_IMAGE),
        wide("Kernel-Version", "string", NODE_KERNEL),
        wide("Container-Runtime", "string", NODE_RUNTIME),
    ],
    cells: node_cells,
};

pub(super) const SERVICE: Printer = Printer {
    columns: &[
        NAME,
        col("Type", "string", SVC_TYPE),
        col("Cluster-IP", "string", SVC_CLUSTER_IP),
        col("External-IP", "string", SVC_EXTERNAL_IPS),
        col("Port(s)", "string", SVC_PORTS),
        AGE,
        wide("Selector", "string", SVC_SELECTOR),
    ],
    cells: service_cells,
};

pub(super) const ENDPOINTS: Printer = Printer {
    columns: &[NAME, col("Endpoints", "string", EP_SUBSETS), AGE],
    cells: |ep, now| vec![name(ep), Value::from(format_endpoints(ep)), age(ep, now)],
};

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Upstream keys conditions by type, so the last Ready condition wins.
    let ready = list_at(node, "/status/conditions").iter().rev().find(|c| str_at(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if at(node, "/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = at(node, "/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None if k == "kubernetes.io/role" => v.as_str().filter(|r| !r.is_empty()),
            None => None,
        })
        .collect();
    let roles = if roles.is_empty() { "<none>".to_string() } else { roles.into_iter().collect::<Vec<_>>().join(",") };
    let address = |kind: &str| {
        let found = list_at(node, "/status/addresses").iter().find(|a| str_at(a, "/type") == kind);
        Value::from(found.map_or("<none>", |a| str_at(a, "/address")))
    };
    let info = |field: &str| {
        Value::from(match str_at(node, &format!("/status/nodeInfo/{field}")) {
            "" => "<unknown>",
            v => v,
        })
    };
    vec![
        name(node),
        Value::from(status.join(",")),
        Value::from(roles),
        age(node, now),
        Value::from(str_at(node, "/status/nodeInfo/kubeletVersion")),
        address("InternalIP"),
        address("ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    // A stored Service has been defaulted: a missing type is ClusterIP, a missing protocol TCP.
    let svc_type = opt_str(svc, "/spec/type").unwrap_or("ClusterIP");
    let cluster_ip = match (str_at(svc, "/spec/clusterIPs/0"), str_at(svc, "/spec/clusterIP")) {
        ("", "") => "<none>",
        ("", ip) | (ip, _) => ip,
    };
    let ports: Vec<String> = list_at(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = opt_str(p, "/protocol").unwrap_or("TCP");
            let (port, node_port) = (int_at(p, "/port"), int_at(p, "/nodePort"));
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect();
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
    vec![
        name(svc),
        Value::from(svc_type),
        Value::from(cluster_ip),
        Value::from(external_ip(svc, svc_type)),
        Value::from(ports),
        age(svc, now),
        Value::from(format_labels(at(svc, "/spec/selector"))),
    ]
}

/// getServiceExternalIP (wide form: load-balancer addresses are not truncated).
fn external_ip(svc: &Value, svc_type: &str) -> String {
    let external: Vec<&str> = list_at(svc, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match svc_type {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_text(svc, "/status/loadBalancer/ingress");
            match (lb.is_empty(), external.is_empty()) {
                (true, true) => "<pending>".to_string(),
                (false, true) => lb,
                (true, false) => external.join(","),
                (false, false) => format!("{lb},{}", external.join(",")),
            }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// formatEndpoints: up to three `ip:port` (or bare IPs for port-less subsets), then "+ N more...".
fn format_endpoints(ep: &Value) -> String {
    let subsets = list_at(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let (mut list, mut count) = (Vec::new(), 0);
    for ss in subsets {
        let addresses = list_at(ss, "/addresses");
        let ports = list_at(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            list.extend(addresses.iter().map(|a| str_at(a, "/ip").to_string()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            list.extend(
                addresses.iter().map(|a| crate::core::net::join_host_port(str_at(a, "/ip"), int_at(port, "/port"))),
            );
        }
    }
    if count > MAX && list.len() >= MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(","), count - MAX);
    }
    list.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn service_ports_and_external_ips() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web"}}});
        let r = service_cells(&svc, now());
        assert_eq!(&r[1..5], &[json!("NodePort"), json!("10.43.0.10"), json!("<none>"), json!("80:30080/TCP,53/UDP")]);
        assert_eq!(r[6], json!("app=web"));

        let plain = json!({"spec": {"clusterIPs": ["10.43.0.1"], "ports": [{"port": 443}]}});
        let r = service_cells(&plain, now());
        assert_eq!(&r[1..5], &[json!("ClusterIP"), json!("10.43.0.1"), json!("<none>"), json!("443/TCP")]);
        assert_eq!(r[6], json!("<none>"));

        let mut lb = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.7", "ports": [{"port": 80, "nodePort": 31000}]}});
        assert_eq!(service_cells(&lb, now())[3], json!("<pending>"));
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.9"}, {"hostname": "lb.example"}]}});
        lb["spec"]["externalIPs"] = json!(["1.2.3.4"]);
        assert_eq!(service_cells(&lb, now())[3], json!("192.168.1.9,lb.example,1.2.3.4"));

        let ext = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        let r = service_cells(&ext, now());
        assert_eq!(&r[2..5], &[json!("<none>"), json!("db.example.com"), json!("<none>")]);
    }

    #[test]
    fn node_status_and_roles() {
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/master": "", "kubernetes.io/role": "edge", "node-role.kubernetes.io/": "x"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0+tug", "osImage": "Debian"}}});
        let r = node_cells(&node, now());
        assert_eq!(&r[1..3], &[json!("Ready,SchedulingDisabled"), json!("control-plane,edge,master")]);
        assert_eq!(r[4], json!("v1.33.0+tug"));
        assert_eq!(
            &r[5..],
            &[json!("192.168.1.10"), json!("<none>"), json!("Debian"), json!("<unknown>"), json!("<unknown>")]
        );

        let bare = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(node_cells(&bare, now())[1..3], [json!("NotReady"), json!("<none>")]);
        assert_eq!(node_cells(&json!({}), now())[1], json!("Unknown"));
    }

    #[test]
    fn endpoints() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(format_endpoints(&ep), "10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 1 more...");
        assert_eq!(format_endpoints(&json!({})), "<none>");
    }
}
