//! tug as a library: every part of the distribution, used by the `tug` binary and by the integration
//! tests, which start servers in-process.

pub mod apiserver;
pub mod cli;
pub mod config;
pub mod controllers;
pub mod core;
pub mod events;
pub mod fsutil;
pub mod pki;
pub mod scheduler;
pub mod server;
pub mod simulator;
pub mod store;
