//! Checks of what the node agent runs with: containerd, runc, the CNI plugins, iptables and its backend,
//! and that tug's ports are free.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;

use super::Check;

/// The CNI plugins the pod network uses.
const CNI_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

const PACKAGES_HINT: &str = "install the OS packages (Debian/Ubuntu: apt-get install containerd runc \
    containernetworking-plugins iptables; Alpine: apk add containerd runc cni-plugins iptables), as install.sh does";

pub fn checks() -> Vec<Check> {
    vec![program("containerd"), program("runc"), cni_plugins(), iptables()]
}

/// The file `name` on PATH, if any.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

fn program(name: &'static str) -> Check {
    match on_path(name) {
        Some(path) => Check::pass(name, path.display().to_string()),
        None => Check::fail(name, "not on PATH", PACKAGES_HINT),
    }
}

fn cni_plugins() -> Check {
    const NAME: &str = "CNI plugins";
    let dir = crate::agent::containerd::cni_bin_dir();
    let missing: Vec<&str> = CNI_PLUGINS.into_iter().filter(|p| !dir.join(p).is_file()).collect();
    match missing.is_empty() {
        true => Check::pass(NAME, format!("{} in {}", CNI_PLUGINS.join(", "), dir.display())),
        false => Check::fail(NAME, format!("missing {} in {}", missing.join(", "), dir.display()), PACKAGES_HINT),
    }
}

fn iptables() -> Check {
    const NAME: &str = "iptables";
    let Some(path) = on_path("iptables") else {
        return Check::fail(NAME, "not on PATH", PACKAGES_HINT);
    };
    match std::process::Command::new(&path).arg("--version").output() {
        Ok(output) if output.status.success() => {
            let version = String::from_utf8_lossy(&output.stdout);
            Check::pass(NAME, format!("{} ({})", version.trim(), backend(&version)))
        }
        _ => Check::fail(NAME, format!("{} does not run", path.display()), PACKAGES_HINT),
    }
}

/// The backend `iptables --version` names: nf_tables or legacy.
fn backend(version: &str) -> &'static str {
    match version.contains("nf_tables") {
        true => "nftables backend; tug uses the same",
        false => "legacy backend; tug uses the same",
    }
}

/// The API server's, the kubelet's and the VXLAN ports, free to bind.
pub fn ports(api_port: u16) -> Vec<Check> {
    let tcp = |port: u16| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).map(drop);
    let udp = |port: u16| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map(drop);
    [
        ("API port", api_port, tcp(api_port)),
        ("kubelet port", crate::kubelet::server::PORT, tcp(crate::kubelet::server::PORT)),
        ("VXLAN port", crate::network::VXLAN_PORT, udp(crate::network::VXLAN_PORT)),
    ]
    .into_iter()
    .map(|(name, port, bound)| match bound {
        Ok(()) => Check::pass(name, format!("{port} free")),
        // tug takes its device over when it starts.
        Err(_) if port == crate::network::VXLAN_PORT && own_vxlan_device() => Check::pass(
            name,
            format!(
                "{port} held by tug's VXLAN device {} (`tug network-cleanup` removes it)",
                crate::network::VXLAN_DEVICE
            ),
        ),
        Err(error) => Check::fail(
            name,
            format!("{port}: {error}"),
            "another program holds it (is tug already running? `ss -lntup` names it)",
        ),
    })
    .collect()
}

/// Whether tug's VXLAN device exists (a running tug's, or one left by a tug that was killed).
fn own_vxlan_device() -> bool {
    std::path::Path::new("/sys/class/net").join(crate::network::VXLAN_DEVICE).exists()
}
