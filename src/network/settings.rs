//! The cluster's network settings, chosen on the server (`--cluster-cidr`, `--network-backend`,
//! `--disable servicelb,coredns`, …) and handed to every joining agent with its credentials, so an
//! agent needs only the server's address and the token (as k3s's agents get theirs from the server).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// How pods on different nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A VXLAN overlay between the nodes (works across routed networks).
    #[default]
    Vxlan,
    /// Routes to each node's podCIDR via its address (nodes on one L2 network).
    HostGw,
    /// No pod network from tug: the user brings a CNI.
    None,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(text: &str) -> Result<Backend, String> {
        match text {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "none" => Ok(Backend::None),
            _ => Err("must be vxlan, host-gw or none".into()),
        }
    }
}

/// What every node of the cluster shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    pub cluster_cidr: IpNet,
    pub service_cidr: IpNet,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub backend: Backend,
    /// The built-in ServiceLB (unless `--disable servicelb`).
    pub service_lb: bool,
    /// The embedded cluster DNS (unless `--disable coredns`).
    pub dns: bool,
    /// NetworkPolicy enforcement (unless `--disable-network-policy`).
    #[serde(default = "enabled")]
    pub network_policy: bool,
}

fn enabled() -> bool {
    true
}

impl Default for ClusterNetwork {
    fn default() -> ClusterNetwork {
        ClusterNetwork {
            cluster_cidr: "10.42.0.0/16".parse().expect("constant"),
            service_cidr: "10.43.0.0/16".parse().expect("constant"),
            cluster_dns: "10.43.0.10".parse().expect("constant"),
            cluster_domain: "cluster.local".into(),
            backend: Backend::default(),
            service_lb: true,
            dns: true,
            network_policy: true,
        }
    }
}

/// The components `--disable` may name (k3s's names).
pub const DISABLEABLE: [&str; 2] = ["servicelb", "coredns"];
