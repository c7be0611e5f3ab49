//! tug as a library: every part of the distribution, used by the `tug` binary and by the integration
//! tests, which start servers in-process.

/// The Kubernetes version tug serves, as its API server's gitVersion and its kubelet's version.
pub const KUBERNETES_VERSION_OF_TUG: &str = concat!("v1.33.0+tug", env!("CARGO_PKG_VERSION"));

pub mod admin;
pub mod agent;
pub mod apiserver;
pub mod certificate;
pub mod check_config;
pub mod cli;
pub mod config;
pub mod controllers;
pub mod core;
pub mod dns;
pub mod events;
pub mod fsutil;
pub mod http_client;
pub mod iptables;
pub mod join;
pub mod kubectl;
pub mod kubelet;
pub mod lifecycle;
pub mod member;
pub mod netpol;
pub mod network;
pub mod pki;
pub mod proxy;
pub mod replication;
pub mod scheduler;
pub mod server;
pub mod simulator;
pub mod snapshot;
pub mod spdy;
pub mod store;
pub mod token;
pub mod upgrade_proxy;
