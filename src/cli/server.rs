//! `tug server` flags.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

/// Flags of `tug server`; every flag can also be set in the config file under the same name.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Config file with the same keys as the flags (YAML)
    #[arg(long, short = 'c', env = "TUG_CONFIG_FILE", default_value = "/etc/tug/config.yaml", help_heading = "Config")]
    pub config: PathBuf,

    /// Turn on debug logs
    #[arg(long, env = "TUG_DEBUG", help_heading = "Logging")]
    pub debug: bool,

    /// Folder to hold state [default: /var/lib/tug, or $HOME/.tug when not root]
    #[arg(long, short = 'd', env = "TUG_DATA_DIR", help_heading = "Data")]
    pub data_dir: Option<PathBuf>,

    /// Keep at least this many revisions of history when compacting
    #[arg(long, env = "TUG_DATASTORE_COMPACT_KEEP_REVISIONS", default_value_t = 1000, help_heading = "Data")]
    pub datastore_compact_keep_revisions: i64,

    /// Keep every revision younger than this when compacting (e.g. 10m; 0s = by count only)
    #[arg(long, env = "TUG_DATASTORE_COMPACT_KEEP_AGE", default_value = "0s", value_parser = humantime::parse_duration, help_heading = "Data")]
    pub datastore_compact_keep_age: std::time::Duration,

    /// Raft log entries (each a batch of up to 512 writes or 1 MiB) between two snapshots of the store;
    /// the log before a snapshot is purged, and a server that missed purged entries catches up from the
    /// snapshot
    #[arg(long, env = "TUG_RAFT_SNAPSHOT_ENTRIES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..), help_heading = "Data")]
    pub raft_snapshot_entries: u64,

    /// Take a snapshot sooner once the applied Raft log entries not in any snapshot exceed this size (e.g. 64Mi),
    /// and purge the oldest kept behind a snapshot once those exceed it too, keeping half: the log's
    /// disk use stays within about twice this
    #[arg(long, env = "TUG_RAFT_SNAPSHOT_BYTES", default_value = "64Mi", help_heading = "Data")]
    pub raft_snapshot_bytes: String,

    /// How often the Raft leader sends heartbeats; it is also how long it waits for a follower to
    /// store a batch of entries, so raise it on slow disks or links (as etcd's --heartbeat-interval)
    #[arg(long, env = "TUG_RAFT_HEARTBEAT_INTERVAL", default_value = "100ms", value_parser = humantime::parse_duration, help_heading = "Data")]
    pub raft_heartbeat_interval: std::time::Duration,

    /// How long a follower waits without hearing from a leader before it calls an election (randomized
    /// between half this and this); at least five heartbeat intervals (as etcd's --election-timeout)
    #[arg(long, env = "TUG_RAFT_ELECTION_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration, help_heading = "Data")]
    pub raft_election_timeout: std::time::Duration,

    /// Take store snapshots on this cron schedule (five fields, the server's local time)
    #[arg(
        long,
        alias = "etcd-snapshot-schedule-cron",
        env = "TUG_SNAPSHOT_SCHEDULE_CRON",
        default_value = "0 */12 * * *",
        help_heading = "Data"
    )]
    pub snapshot_schedule_cron: String,

    /// Scheduled snapshots to keep (older ones are deleted)
    #[arg(long, alias = "etcd-snapshot-retention", env = "TUG_SNAPSHOT_RETENTION", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Data")]
    pub snapshot_retention: u32,

    /// Folder of the store snapshots [default: <data-dir>/server/db/snapshots]
    #[arg(long, alias = "etcd-snapshot-dir", env = "TUG_SNAPSHOT_DIR", help_heading = "Data")]
    pub snapshot_dir: Option<PathBuf>,

    /// Take no scheduled snapshots
    #[arg(long, alias = "etcd-disable-snapshots", env = "TUG_DISABLE_SNAPSHOTS", help_heading = "Data")]
    pub disable_snapshots: bool,

    /// How often to compact history
    #[arg(long, env = "TUG_DATASTORE_COMPACT_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration, help_heading = "Data")]
    pub datastore_compact_interval: std::time::Duration,

    /// Address the API server listens on
    #[arg(long, env = "TUG_BIND_ADDRESS", default_value = "0.0.0.0", help_heading = "Listener")]
    pub bind_address: IpAddr,

    /// Port the API server listens on (0 picks a free port; the kubeconfig says which)
    #[arg(long, env = "TUG_HTTPS_LISTEN_PORT", default_value_t = 6443, help_heading = "Listener")]
    pub https_listen_port: u16,

    /// IP address the API server advertises to members of the cluster [default: --bind-address, or the
    /// node IP when bound to all addresses]
    #[arg(long, env = "TUG_ADVERTISE_ADDRESS", help_heading = "Listener")]
    pub advertise_address: Option<IpAddr>,

    /// Extra hostname or IP as a Subject Alternative Name of the serving certificate (repeatable)
    #[arg(long, env = "TUG_TLS_SAN", value_delimiter = ',', help_heading = "Listener")]
    pub tls_san: Vec<String>,

    /// Write the admin kubeconfig to this file [default: /etc/tug/tug.yaml as root, else $HOME/.kube/tug.yaml]
    #[arg(long, short = 'o', env = "TUG_KUBECONFIG_OUTPUT", help_heading = "Client")]
    pub write_kubeconfig: Option<PathBuf>,

    /// Permission bits of the written kubeconfig, octal
    #[arg(long, env = "TUG_KUBECONFIG_MODE", default_value = "0600", help_heading = "Client")]
    pub write_kubeconfig_mode: String,

    /// How long a node may go without heartbeat before it is marked NotReady (Unknown) and tainted
    #[arg(long, env = "TUG_NODE_MONITOR_GRACE_PERIOD", default_value = "50s", value_parser = humantime::parse_duration, help_heading = "Cluster")]
    pub node_monitor_grace_period: std::time::Duration,

    /// How often certificates (the server's and its node's kubelet's) are checked while the server runs;
    /// those within 120 days of expiry are renewed and put in use at once
    #[arg(long, env = "TUG_CERTIFICATE_CHECK_INTERVAL", default_value = "12h", value_parser = humantime::parse_duration, help_heading = "Cluster")]
    pub certificate_check_interval: std::time::Duration,

    /// IPv4 network CIDR to use for pod IPs
    #[arg(long, env = "TUG_CLUSTER_CIDR", default_value = "10.42.0.0/16", help_heading = "Networking")]
    pub cluster_cidr: String,

    /// IPv4 network CIDR to use for service IPs
    #[arg(long, env = "TUG_SERVICE_CIDR", default_value = "10.43.0.0/16", help_heading = "Networking")]
    pub service_cidr: String,

    /// Range of ports for NodePort services
    #[arg(long, env = "TUG_SERVICE_NODE_PORT_RANGE", default_value = "30000-32767", help_heading = "Networking")]
    pub service_node_port_range: String,

    /// Cluster IP of the DNS service (must be in the service CIDR)
    #[arg(long, env = "TUG_CLUSTER_DNS", default_value = "10.43.0.10", help_heading = "Networking")]
    pub cluster_dns: IpAddr,

    /// Cluster domain
    #[arg(long, env = "TUG_CLUSTER_DOMAIN", default_value = "cluster.local", help_heading = "Networking")]
    pub cluster_domain: String,

    /// How pods on different nodes reach each other: vxlan, host-gw (nodes on one L2 network) or none (bring your own CNI)
    #[arg(long, env = "TUG_NETWORK_BACKEND", default_value = "vxlan", help_heading = "Networking")]
    pub network_backend: String,

    /// Do not run these built-in components: servicelb, coredns (the embedded cluster DNS)
    #[arg(long, env = "TUG_DISABLE", value_delimiter = ',', help_heading = "Components")]
    pub disable: Vec<String>,

    /// Do not enforce NetworkPolicies (for clusters whose CNI does)
    #[arg(long, env = "TUG_DISABLE_NETWORK_POLICY", help_heading = "Components")]
    pub disable_network_policy: bool,

    /// Shared secret used to join agents and servers
    #[arg(long, short = 't', env = "TUG_TOKEN", hide_env_values = true, help_heading = "Cluster")]
    pub token: Option<String>,

    /// Forget the cluster's other servers: this server becomes a cluster of one with the store it holds
    /// (or the snapshot of --cluster-reset-restore-path), then exits; restart it without this flag
    #[arg(long, env = "TUG_CLUSTER_RESET", help_heading = "Cluster")]
    pub cluster_reset: bool,

    /// With --cluster-reset: replace the store with this snapshot first (see `tug snapshot`)
    #[arg(
        long,
        env = "TUG_CLUSTER_RESET_RESTORE_PATH",
        requires = "cluster_reset",
        value_name = "FILE",
        help_heading = "Cluster"
    )]
    pub cluster_reset_restore_path: Option<PathBuf>,

    /// Join the cluster of the server at https://HOST:PORT (needs --token): this server's store becomes
    /// a replica of the cluster's (ignored once this server is a member)
    #[arg(long, short = 's', env = "TUG_URL", value_name = "URL", help_heading = "Cluster")]
    pub server: Option<String>,

    /// Do not run a node agent in the server process
    #[arg(long, env = "TUG_DISABLE_AGENT", help_heading = "Components")]
    pub disable_agent: bool,

    #[command(flatten)]
    pub node: super::NodeArgs,
}
