//! The pod network's CNI config for containerd: once the node has its podCIDR (node IPAM assigns it),
//! a conflist of the standard plugins from the OS packages — bridge `cni0` with host-local addresses
//! from the podCIDR, portmap for hostPort, bandwidth for traffic shaping — written atomically into the
//! directory containerd's CRI plugin watches. Until then the runtime reports its network not ready and
//! so does the node. Masquerading is the pod network's own (`masquerade.rs`), not the bridge
//! plugin's, which would hide pods' addresses from pods on other nodes.

use std::path::Path;

use ipnet::IpNet;
use serde_json::json;

/// The file the agent owns in the CNI config directory.
const CONFLIST: &str = "10-tug.conflist";
/// The bridge the pods of a node are attached to.
pub const BRIDGE: &str = "cni0";

/// The conflist for a node whose pods take addresses from `pod_cidr`, with interfaces of `mtu` bytes
/// when the pod network needs smaller packets than the host's; host-local keeps its leases in
/// `ipam_dir`.
pub fn render(pod_cidr: IpNet, mtu: Option<u32>, ipam_dir: &Path) -> String {
    let default_route = if pod_cidr.addr().is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    let mut bridge = json!({"type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": false, "hairpinMode": true,
        "ipam": {"type": "host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": pod_cidr.to_string()}]],
                 "routes": [{"dst": default_route}]}});
    if let Some(mtu) = mtu {
        bridge["mtu"] = mtu.into();
    }
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "tug",
        "plugins": [
            bridge,
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}},
        ],
    });
    serde_json::to_string_pretty(&conflist).unwrap_or_default()
}

/// Writes the conflist into `conf_dir`, where containerd's CRI plugin picks it up.
pub fn write(conf_dir: &Path, pod_cidr: IpNet, mtu: Option<u32>, ipam_dir: &Path) -> std::io::Result<()> {
    let path = conf_dir.join(CONFLIST);
    crate::fsutil::write_atomic(&path, render(pod_cidr, mtu, ipam_dir).as_bytes(), 0o644)?;
    tracing::info!(%pod_cidr, path = %path.display(), "wrote the pod network's CNI config");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_bridge_hands_out_the_nodes_pod_cidr() {
        let text = render("10.42.3.0/24".parse().expect("cidr"), Some(1450), Path::new("/var/lib/tug/agent/cni"));
        let conflist: Value = serde_json::from_str(&text).expect("json");
        let bridge = &conflist["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(bridge["mtu"], 1450);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/tug/agent/cni");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(conflist["plugins"][1]["capabilities"]["portMappings"], true);
    }
}
