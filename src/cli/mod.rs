//! The command line: clap derive structs per subcommand, flags named as k3s names them, each with a
//! `TUG_*` environment variable, grouped by category in `--help`.

mod agent;
mod certificate;
mod check_config;
mod member;
mod node;
#[cfg(test)]
mod reference;
mod server;
mod simulate;
mod snapshot;
mod token;

pub use agent::AgentArgs;
pub use certificate::{CertificateAction, CertificateArgs};
pub use check_config::CheckConfigArgs;
pub use member::{MemberAction, MemberArgs};
pub use node::NodeArgs;
pub use server::ServerArgs;
pub use simulate::SimulateArgs;
pub use snapshot::{SnapshotAction, SnapshotArgs};
pub use token::{TokenAction, TokenArgs};

use clap::{Parser, Subcommand};

/// tug: a lightweight Kubernetes distribution in one binary.
#[derive(Debug, Parser)]
#[command(name = "tug", version, about, propagate_version = true, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (API server, store, controllers) and, unless --disable-agent, a node agent.
    Server(Box<ServerArgs>),
    /// Run a node agent that joins a server.
    Agent(AgentArgs),
    /// Run simulated nodes against a server (like kwok): they register, heartbeat and run pods on paper,
    /// to rehearse a fleet or exercise the control plane without containerd.
    Simulate(SimulateArgs),
    /// Remove what tug's pod network and service proxy added to this host: its iptables chains (both
    /// backends), its routes, the VXLAN device and the pods' bridge. For tug-killall.sh and uninstall;
    /// run it with tug stopped.
    NetworkCleanup,
    /// Save, list, delete and prune snapshots of the store (as k3s's etcd-snapshot); restore one with
    /// `tug server --cluster-reset --cluster-reset-restore-path FILE`.
    Snapshot(SnapshotArgs),
    /// List the cluster's servers and remove one (as `etcdctl member`), through the API with the admin
    /// kubeconfig.
    Member(MemberArgs),
    /// Create, list and delete bootstrap tokens, with which agents join until they expire (as k3s's
    /// `token`), through the API with the admin kubeconfig.
    Token(TokenArgs),
    /// Check the expiry of tug's certificates on this machine, and rotate them (as k3s's
    /// `certificate`).
    Certificate(CertificateArgs),
    /// Check that this host can run tug: kernel features, the container runtime, free ports and the
    /// data dir's disk, with a hint for each failure.
    CheckConfig(CheckConfigArgs),
    /// Run the kubectl on PATH with the admin kubeconfig `tug server` writes (unless KUBECONFIG is set);
    /// every argument goes to kubectl.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}
