//! The node's validated settings, shared by `tug server` (its in-process agent) and `tug agent`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::{invalid, ConfigError};
use crate::cli::NodeArgs;
use crate::core::validation::{is_dns1123_subdomain, is_qualified_name, is_valid_label_value};

/// Who the node is and which runtime it drives.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub name: String,
    pub ip: Option<IpAddr>,
    pub external_ip: Option<IpAddr>,
    /// `--resolv-conf`: the node's resolver settings for pods and the cluster DNS.
    pub resolv_conf: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Mirrors, credentials and TLS of private registries, for the containerd the agent starts.
    pub registries: crate::agent::registries::Registries,
    pub log_rotation: crate::kubelet::log_rotation::Policy,
}

impl NodeConfig {
    pub fn from_args(args: NodeArgs) -> Result<NodeConfig, ConfigError> {
        let name = match args.node_name {
            Some(name) => name,
            None => hostname::get().map(|h| h.to_string_lossy().to_ascii_lowercase()).unwrap_or_default(),
        };
        if let Some(problem) = is_dns1123_subdomain(&name).into_iter().next() {
            return Err(invalid("node-name", &name, format!("{problem}; set --node-name")));
        }
        let max_size = super::byte_size("container-log-max-size", &args.container_log_max_size, "1Ki")?;
        if args.container_log_max_files < 2 {
            return Err(invalid("container-log-max-files", args.container_log_max_files, "must be at least 2"));
        }
        let log_rotation = crate::kubelet::log_rotation::Policy { max_size, max_files: args.container_log_max_files };
        let ip = match (&args.node_ip, &args.network_iface) {
            (Some(ip), _) => Some(*ip),
            (None, Some(iface)) => Some(
                crate::network::interface_ipv4(iface)
                    .ok_or_else(|| invalid("network-iface", iface, "no such interface with an IPv4 address"))?,
            ),
            (None, None) => None,
        };
        Ok(NodeConfig {
            log_rotation,
            name,
            ip,
            external_ip: args.node_external_ip,
            resolv_conf: match args.resolv_conf {
                Some(path) if std::fs::metadata(&path).is_err() => {
                    return Err(invalid("resolv-conf", path.display(), "no such file"))
                }
                given => given,
            },
            labels: parse_labels("node-label", &args.node_labels)?,
            container_runtime_endpoint: args.container_runtime_endpoint,
            registries: registries(args.private_registry.as_deref())?,
        })
    }
}

/// The registries file given, or the default one if it exists.
fn registries(given: Option<&std::path::Path>) -> Result<crate::agent::registries::Registries, ConfigError> {
    use crate::agent::registries::{load, DEFAULT_PATH};
    let path = given.unwrap_or(std::path::Path::new(DEFAULT_PATH));
    load(path, given.is_some()).map_err(|why| invalid("private-registry", path.display(), why))
}

/// `key=value` labels, each key and value checked as the API checks them.
pub fn parse_labels(flag: &'static str, labels: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut parsed = BTreeMap::new();
    for label in labels {
        let (key, value) = label.split_once('=').ok_or_else(|| invalid(flag, label, "want key=value"))?;
        if let Some(problem) = is_qualified_name(key).into_iter().chain(is_valid_label_value(value)).next() {
            return Err(invalid(flag, label, problem));
        }
        parsed.insert(key.to_string(), value.to_string());
    }
    Ok(parsed)
}
