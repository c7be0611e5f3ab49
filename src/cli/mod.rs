//! The command line: clap derive structs per subcommand, flags named as k3s names them, each with a
//! `TUG_*` environment variable, grouped by category in `--help`.

mod agent;
mod server;

pub use agent::AgentArgs;
pub use server::ServerArgs;

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
}
