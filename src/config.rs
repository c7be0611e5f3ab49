//! From the command line, `TUG_*` environment variables and the YAML config file to a validated
//! [`ServerConfig`]. Precedence: flag, then environment, then config file, then default. No I/O beyond
//! reading the config file.

use std::ffi::OsString;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use ipnet::IpNet;

use crate::cli::{Cli, ServerArgs};
use crate::store::CompactionPolicy;
pub use agent::AgentRunConfig;
pub use node::{parse_labels, NodeConfig};

/// A problem with the flags or the config file; shown as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid --{flag} {value:?}: {reason}")]
    Invalid { flag: &'static str, value: String, reason: String },
}

/// Parses `argv` (with the program name first), merging in the config file of the chosen subcommand.
pub fn parse_cli(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let Some((sub, sub_matches)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches);
    };
    let has_config_file = Cli::command()
        .find_subcommand(sub)
        .is_some_and(|command| command.get_arguments().any(|arg| arg.get_id() == "config"));
    if !has_config_file {
        return Cli::from_arg_matches(&matches);
    }
    let explicit = sub_matches.value_source("config") != Some(ValueSource::DefaultValue);
    let path = sub_matches.get_one::<PathBuf>("config").cloned().unwrap_or_default();
    let file_args = match config_file_args(sub, &path, explicit, sub_matches) {
        Ok(args) => args,
        Err(e) => return Err(Cli::command().error(clap::error::ErrorKind::InvalidValue, e.to_string())),
    };
    if file_args.is_empty() {
        return Cli::from_arg_matches(&matches);
    }
    let at = argv.iter().position(|a| a == sub).map_or(argv.len(), |i| i + 1);
    let merged: Vec<OsString> = argv[..at]
        .iter()
        .cloned()
        .chain(file_args.into_iter().map(OsString::from))
        .chain(argv[at..].iter().cloned())
        .collect();
    Cli::from_arg_matches(&Cli::command().try_get_matches_from(merged)?)
}

/// The config file's entries as flags, leaving out those the command line or environment already set.
fn config_file_args(
    sub: &str,
    path: &Path,
    explicit: bool,
    matches: &clap::ArgMatches,
) -> Result<Vec<String>, ConfigError> {
    let err = |reason: String| ConfigError::File { path: path.to_path_buf(), reason };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(vec![]),
        Err(e) => return Err(err(e.to_string())),
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let map = match doc {
        serde_yaml::Value::Null => return Ok(vec![]),
        serde_yaml::Value::Mapping(map) => map,
        _ => return Err(err("expected a mapping of flag names to values".into())),
    };
    let command = Cli::command();
    let Some(subcommand) = command.find_subcommand(sub) else {
        return Ok(vec![]);
    };
    let mut args = Vec::new();
    for (key, value) in map {
        let key = key.as_str().ok_or_else(|| err("keys must be strings".into()))?.to_string();
        let arg = subcommand
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .ok_or_else(|| err(format!("unknown key {key:?}")))?;
        let id = arg.get_id().as_str();
        let already = matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
        if already || key == "config" {
            continue;
        }
        for item in scalar_items(&key, value).map_err(err)? {
            match item {
                Some(v) => args.push(format!("--{key}={v}")),
                None => args.push(format!("--{key}")),
            }
        }
    }
    Ok(args)
}

/// One config value as flag values: `None` is a bare boolean flag; false booleans give nothing.
fn scalar_items(key: &str, value: serde_yaml::Value) -> Result<Vec<Option<String>>, String> {
    use serde_yaml::Value as Y;
    match value {
        Y::Bool(true) => Ok(vec![None]),
        Y::Bool(false) | Y::Null => Ok(vec![]),
        Y::String(s) => Ok(vec![Some(s)]),
        Y::Number(n) => Ok(vec![Some(n.to_string())]),
        Y::Sequence(items) => items
            .into_iter()
            .map(|item| match item {
                Y::String(s) => Ok(Some(s)),
                Y::Number(n) => Ok(Some(n.to_string())),
                _ => Err(format!("{key}: list items must be strings or numbers")),
            })
            .collect(),
        _ => Err(format!("{key}: expected a string, number, boolean or list")),
    }
}

/// The validated configuration of `tug server`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_listen_port: u16,
    pub advertise_address: Option<IpAddr>,
    pub tls_sans: Vec<String>,
    pub kubeconfig_path: PathBuf,
    pub kubeconfig_mode: u32,
    pub cluster_cidr: IpNet,
    pub service_cidr: IpNet,
    pub node_port_range: RangeInclusive<u16>,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub network_backend: crate::network::Backend,
    /// Built-in components turned off with `--disable` (see [`crate::network::DISABLEABLE`]).
    pub disabled: Vec<String>,
    pub disable_network_policy: bool,
    pub token: Option<crate::join::Token>,
    /// Scheduled store snapshots (None with --disable-snapshots).
    pub snapshots: Option<crate::snapshot::Schedule>,
    /// Raft log entries between store snapshots.
    pub raft_snapshot_entries: u64,
    /// Bytes of Raft log entries after which a snapshot is taken sooner.
    pub raft_snapshot_bytes: u64,
    /// The Raft heartbeat interval and election timeout.
    pub raft_timing: crate::replication::Timing,
    /// `--cluster-reset`, with the snapshot to restore first if any.
    pub cluster_reset: Option<ClusterReset>,
    /// The member to join through (`--server`), with the token.
    pub join: Option<crate::join::client::ServerUrl>,
    pub disable_agent: bool,
    /// The in-process agent's node (unused with --disable-agent).
    pub node: NodeConfig,
    pub compaction: CompactionPolicy,
    pub node_monitor_grace_period: std::time::Duration,
    /// How often certificates are checked for renewal while running.
    pub certificate_check_interval: std::time::Duration,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

/// Where the server writes its admin kubeconfig: /etc/tug/tug.yaml as root, else ~/.kube/tug.yaml.
pub fn default_kubeconfig() -> PathBuf {
    if is_root() {
        "/etc/tug/tug.yaml".into()
    } else {
        home().join(".kube/tug.yaml")
    }
}

/// /var/lib/tug as root, else ~/.tug.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        "/var/lib/tug".into()
    } else {
        home().join(".tug")
    }
}

/// `--cluster-domain`: a DNS name, without its trailing dot.
fn cluster_domain(given: &str) -> Result<String, ConfigError> {
    let domain = given.trim_end_matches('.').to_string();
    if domain.is_empty() || !crate::core::validation::is_dns1123_subdomain(&domain).is_empty() {
        return Err(invalid("cluster-domain", given, "must be a DNS name such as cluster.local"));
    }
    Ok(domain)
}

/// `--raft-heartbeat-interval` and `--raft-election-timeout`, in etcd's bounds: a heartbeat of at
/// least a millisecond, an election timeout of at least five heartbeats.
fn raft_timing(heartbeat: Duration, election_timeout: Duration) -> Result<crate::replication::Timing, ConfigError> {
    let shown = |d: Duration| humantime::format_duration(d).to_string();
    if heartbeat < Duration::from_millis(1) {
        return Err(invalid("raft-heartbeat-interval", shown(heartbeat), "must be at least 1ms"));
    }
    if election_timeout < heartbeat * 5 {
        return Err(invalid(
            "raft-election-timeout",
            shown(election_timeout),
            format!("must be at least five heartbeat intervals ({})", shown(heartbeat * 5)),
        ));
    }
    Ok(crate::replication::Timing { heartbeat, election_timeout })
}

/// A size flag (`64Mi`, `10M`, `1048576`: a Kubernetes quantity of bytes) of at least `min`.
fn byte_size(flag: &'static str, value: &str, min: &str) -> Result<u64, ConfigError> {
    let least = crate::core::quantity::parse_whole(min).expect("a valid minimum");
    crate::core::quantity::parse_whole(value)
        .ok()
        .filter(|bytes| *bytes >= least)
        .and_then(|bytes| u64::try_from(bytes).ok())
        .ok_or_else(|| invalid(flag, value, format!("want a size of at least {min}, such as 10Mi")))
}

fn invalid(flag: &'static str, value: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid { flag, value: value.to_string(), reason: reason.to_string() }
}

fn parse_cidr(flag: &'static str, value: &str) -> Result<IpNet, ConfigError> {
    let net: IpNet = value.parse().map_err(|_| invalid(flag, value, "not a CIDR such as 10.42.0.0/16"))?;
    if net.trunc() != net {
        return Err(invalid(flag, value, format!("host bits are set; did you mean {}?", net.trunc())));
    }
    Ok(net)
}

fn parse_port_range(value: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let bad = || invalid("service-node-port-range", value, "expected FIRST-LAST, e.g. 30000-32767");
    let (first, last) = value.split_once('-').ok_or_else(bad)?;
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok(first..=last)
}

/// A `--token`, never echoed back in an error.
fn parse_token(text: &str) -> Result<crate::join::Token, ConfigError> {
    crate::join::Token::parse(text).map_err(|e| invalid("token", "(hidden)", e))
}

/// What `--cluster-reset` does.
#[derive(Debug, Clone)]
pub struct ClusterReset {
    /// The snapshot that replaces the store first.
    pub restore: Option<PathBuf>,
}

impl ServerConfig {
    /// Validates the parsed flags.
    pub fn from_args(args: ServerArgs) -> Result<ServerConfig, ConfigError> {
        let token = args.token.as_deref().map(parse_token).transpose()?;
        let join = args
            .server
            .as_deref()
            .map(|url| crate::join::client::ServerUrl::parse(url).map_err(|reason| invalid("server", url, reason)))
            .transpose()?;
        if join.is_some() && token.is_none() {
            return Err(invalid("token", "", "required with --server: the token of the cluster to join"));
        }
        let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
        let kubeconfig_path = args.write_kubeconfig.unwrap_or_else(default_kubeconfig);
        let mode_text = args.write_kubeconfig_mode.trim_start_matches("0o");
        let kubeconfig_mode = u32::from_str_radix(mode_text, 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| {
            invalid("write-kubeconfig-mode", &args.write_kubeconfig_mode, "expected octal permission bits such as 0600")
        })?;
        let cluster_cidr = parse_cidr("cluster-cidr", &args.cluster_cidr)?;
        let service_cidr = parse_cidr("service-cidr", &args.service_cidr)?;
        if cluster_cidr.contains(&service_cidr.network()) || service_cidr.contains(&cluster_cidr.network()) {
            return Err(invalid("service-cidr", &args.service_cidr, format!("overlaps --cluster-cidr {cluster_cidr}")));
        }
        if !service_cidr.contains(&args.cluster_dns) {
            return Err(invalid("cluster-dns", args.cluster_dns, format!("not inside --service-cidr {service_cidr}")));
        }
        let domain = cluster_domain(&args.cluster_domain)?;
        let network_backend =
            args.network_backend.parse().map_err(|why| invalid("network-backend", &args.network_backend, why))?;
        if let Some(unknown) = args.disable.iter().find(|c| !crate::network::DISABLEABLE.contains(&c.as_str())) {
            let known = crate::network::DISABLEABLE.join(", ");
            return Err(invalid("disable", unknown, format!("not a component that can be disabled ({known})")));
        }
        if let Some(san) = args.tls_san.iter().find(|s| s.trim().is_empty()) {
            return Err(invalid("tls-san", san, "must not be empty"));
        }
        if args.datastore_compact_keep_revisions < 1 {
            return Err(invalid(
                "datastore-compact-keep-revisions",
                args.datastore_compact_keep_revisions,
                "must be at least 1",
            ));
        }
        if args.node_monitor_grace_period.is_zero() {
            return Err(invalid("node-monitor-grace-period", "0s", "must be positive"));
        }
        if args.certificate_check_interval.is_zero() {
            return Err(invalid("certificate-check-interval", "0s", "must be positive"));
        }
        if args.datastore_compact_interval.is_zero() {
            return Err(invalid("datastore-compact-interval", "0s", "must be positive"));
        }
        let raft_timing = raft_timing(args.raft_heartbeat_interval, args.raft_election_timeout)?;
        let raft_snapshot_bytes = byte_size("raft-snapshot-bytes", &args.raft_snapshot_bytes, "1Mi")?;
        // Without an agent the node's flags do not matter, even a host name that is no node name.
        let node = match NodeConfig::from_args(args.node) {
            Ok(node) => node,
            Err(_) if args.disable_agent => NodeConfig::default(),
            Err(e) => return Err(e),
        };
        let snapshots = match args.disable_snapshots {
            true => None,
            false => Some(crate::snapshot::Schedule {
                cron: crate::core::cron::Schedule::parse(&args.snapshot_schedule_cron)
                    .map_err(|reason| invalid("snapshot-schedule-cron", &args.snapshot_schedule_cron, reason))?,
                retention: args.snapshot_retention as usize,
                dir: args.snapshot_dir.clone().unwrap_or_else(|| crate::snapshot::default_dir(&data_dir)),
            }),
        };
        Ok(ServerConfig {
            data_dir,
            bind_address: args.bind_address,
            https_listen_port: args.https_listen_port,
            advertise_address: args.advertise_address,
            tls_sans: args.tls_san,
            kubeconfig_path,
            kubeconfig_mode,
            cluster_cidr,
            service_cidr,
            node_port_range: parse_port_range(&args.service_node_port_range)?,
            cluster_dns: args.cluster_dns,
            cluster_domain: domain,
            network_backend,
            disabled: args.disable,
            disable_network_policy: args.disable_network_policy,
            snapshots,
            cluster_reset: args
                .cluster_reset
                .then(|| ClusterReset { restore: args.cluster_reset_restore_path.clone() }),
            raft_snapshot_entries: args.raft_snapshot_entries,
            raft_timing,
            raft_snapshot_bytes,
            join,
            token,
            disable_agent: args.disable_agent,
            node,
            compaction: CompactionPolicy {
                interval: args.datastore_compact_interval,
                keep_revisions: args.datastore_compact_keep_revisions,
                keep_age: args.datastore_compact_keep_age,
            },
            node_monitor_grace_period: args.node_monitor_grace_period,
            certificate_check_interval: args.certificate_check_interval,
        })
    }
}

impl ServerConfig {
    /// The network settings every node of this server's cluster shares.
    pub fn cluster_network(&self) -> crate::network::ClusterNetwork {
        crate::network::ClusterNetwork {
            cluster_cidr: self.cluster_cidr,
            service_cidr: self.service_cidr,
            cluster_dns: self.cluster_dns,
            cluster_domain: self.cluster_domain.clone(),
            backend: self.network_backend,
            service_lb: !self.disabled.iter().any(|c| c == "servicelb"),
            dns: !self.disabled.iter().any(|c| c == "coredns"),
            network_policy: !self.disable_network_policy,
        }
    }
}

#[path = "config/agent.rs"]
mod agent;
#[path = "config/node.rs"]
mod node;

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
