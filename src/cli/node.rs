//! Flags of the node a server or agent runs (`tug server` without --disable-agent, `tug agent`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

/// The node's own flags.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Node name (default: the host name, lowercased)
    #[arg(long, env = "TUG_NODE_NAME", help_heading = "Agent/Node")]
    pub node_name: Option<String>,

    /// IP address to advertise for the node (default: the host's first IPv4 address)
    #[arg(long, env = "TUG_NODE_IP", help_heading = "Agent/Node")]
    pub node_ip: Option<IpAddr>,

    /// External IP address to advertise for the node (its ExternalIP; ServiceLB gives it to LoadBalancer Services)
    #[arg(long, env = "TUG_NODE_EXTERNAL_IP", help_heading = "Agent/Node")]
    pub node_external_ip: Option<IpAddr>,

    /// Interface whose first IPv4 address is the node IP (and so carries the overlay) when --node-ip is not given
    #[arg(long, env = "TUG_NETWORK_IFACE", help_heading = "Agent/Networking")]
    pub network_iface: Option<String>,

    /// The resolv.conf for pods with dnsPolicy Default and for the cluster DNS's upstream servers [default: /etc/resolv.conf]
    #[arg(long, env = "TUG_RESOLV_CONF", help_heading = "Agent/Networking")]
    pub resolv_conf: Option<PathBuf>,

    /// Labels to register the node with, key=value
    #[arg(long = "node-label", env = "TUG_NODE_LABEL", value_delimiter = ',', help_heading = "Agent/Node")]
    pub node_labels: Vec<String>,

    /// Rotate a container's log once it is larger than this (e.g. 10Mi)
    #[arg(long, env = "TUG_CONTAINER_LOG_MAX_SIZE", default_value = "10Mi", help_heading = "Agent/Runtime")]
    pub container_log_max_size: String,

    /// Log files kept per container, the current one included (at least 2)
    #[arg(long, env = "TUG_CONTAINER_LOG_MAX_FILES", default_value_t = 5, help_heading = "Agent/Runtime")]
    pub container_log_max_files: usize,

    /// Private registry configuration file: mirrors, credentials, TLS (default /etc/tug/registries.yaml, if it exists)
    #[arg(long, env = "TUG_PRIVATE_REGISTRY", help_heading = "Agent/Runtime")]
    pub private_registry: Option<PathBuf>,

    /// Use this CRI socket instead of starting containerd
    #[arg(long, env = "TUG_CONTAINER_RUNTIME_ENDPOINT", help_heading = "Agent/Runtime")]
    pub container_runtime_endpoint: Option<PathBuf>,
}
