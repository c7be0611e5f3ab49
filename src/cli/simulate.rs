//! `tug simulate` flags: how many simulated nodes to run against which server, what they offer, and how
//! their pods behave.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Flags of `tug simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Kubeconfig of the cluster to join [default: $KUBECONFIG, else /etc/tug/tug.yaml as root, else $HOME/.kube/tug.yaml]
    #[arg(long, env = "TUG_KUBECONFIG", help_heading = "Cluster")]
    pub kubeconfig: Option<PathBuf>,

    /// How many nodes to simulate
    #[arg(long, env = "TUG_SIM_NODES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = "Nodes")]
    pub nodes: u32,

    /// Node names are this prefix and a number from 0
    #[arg(long, env = "TUG_SIM_NAME_PREFIX", default_value = "sim-", help_heading = "Nodes")]
    pub name_prefix: String,

    /// CPU of each node (a quantity)
    #[arg(long, env = "TUG_SIM_CPU", default_value = "4", help_heading = "Nodes")]
    pub cpu: String,

    /// Memory of each node (a quantity)
    #[arg(long, env = "TUG_SIM_MEMORY", default_value = "8Gi", help_heading = "Nodes")]
    pub memory: String,

    /// Pods each node may run
    #[arg(long, env = "TUG_SIM_MAX_PODS", default_value_t = 110, help_heading = "Nodes")]
    pub max_pods: u32,

    /// Label of every node, key=value (repeatable)
    #[arg(long = "node-label", env = "TUG_SIM_NODE_LABEL", value_delimiter = ',', help_heading = "Nodes")]
    pub node_labels: Vec<String>,

    /// Taint of every node, key[=value]:effect (repeatable)
    #[arg(long = "node-taint", env = "TUG_SIM_NODE_TAINT", value_delimiter = ',', help_heading = "Nodes")]
    pub node_taints: Vec<String>,

    /// How often each node renews its Lease
    #[arg(long, env = "TUG_SIM_HEARTBEAT", default_value = "10s", value_parser = humantime::parse_duration, help_heading = "Nodes")]
    pub heartbeat: Duration,

    /// How long a bound pod takes to become Running and Ready
    #[arg(long, env = "TUG_SIM_START_DELAY", default_value = "0s", value_parser = humantime::parse_duration, help_heading = "Pods")]
    pub start_delay: Duration,

    /// How long pods that exit run (pods of Jobs, or annotated tug.dev/simulate-exit-code) unless annotated tug.dev/simulate-run-seconds
    #[arg(long, env = "TUG_SIM_RUN_TIME", default_value = "1s", value_parser = humantime::parse_duration, help_heading = "Pods")]
    pub run_time: Duration,
}
