//! The pod network's CNI config for containerd: once the node has its podCIDR (node IPAM assigns it),
//! a conflist of the standard plugins from the OS packages — bridge `cni0` with host-local addresses
//! from the podCIDR, portmap for hostPort, bandwidth for traffic shaping — written atomically into the
//! directory containerd's CRI plugin watches. Until then the runtime reports its network not ready and
//! so does the node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use serde_json::json;

/// The file the agent owns in the CNI config directory.
const CONFLIST: &str = "10-tug.conflist";
const POLL: Duration = Duration::from_millis(500);

/// The conflist for a node whose pods take addresses from `pod_cidr`; host-local keeps its leases in
/// `ipam_dir`.
pub fn render(pod_cidr: IpNet, ipam_dir: &Path) -> String {
    let default_route = if pod_cidr.addr().is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "tug",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": pod_cidr.to_string()}]],
                      "routes": [{"dst": default_route}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}},
        ],
    });
    serde_json::to_string_pretty(&conflist).unwrap_or_default()
}

/// Waits for the node's podCIDR, then writes the conflist into `conf_dir`.
pub async fn write_when_assigned(nodes: Api<Node>, name: String, conf_dir: PathBuf, ipam_dir: PathBuf) {
    let cidr = loop {
        let assigned = nodes.get_opt(&name).await.ok().flatten().and_then(|n| n.spec?.pod_cidr);
        if let Some(cidr) = assigned.and_then(|c| c.parse::<IpNet>().ok()) {
            break cidr;
        }
        tokio::time::sleep(POLL).await;
    };
    let path = conf_dir.join(CONFLIST);
    match crate::fsutil::write_atomic(&path, render(cidr, &ipam_dir).as_bytes(), 0o644) {
        Ok(()) => tracing::info!(pod_cidr = %cidr, path = %path.display(), "wrote the pod network's CNI config"),
        Err(error) => tracing::error!(%error, path = %path.display(), "cannot write the CNI config"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_bridge_hands_out_the_nodes_pod_cidr() {
        let text = render("10.42.3.0/24".parse().expect("cidr"), Path::new("/var/lib/tug/agent/cni"));
        let conflist: Value = serde_json::from_str(&text).expect("json");
        let bridge = &conflist["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/tug/agent/cni");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(conflist["plugins"][1]["capabilities"]["portMappings"], true);
    }
}
