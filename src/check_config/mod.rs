//! `tug check-config`: whether this host can run tug, as k3s's check-config: one line per check, pass or
//! fail, and for each failure a hint saying what to do. Checks read the host (/proc, /sys, PATH), bind
//! tug's ports for a moment, and time synced writes to a scratch file (removed) in the data dir or, when
//! that is not made yet, its closest existing parent.

mod disk;
mod kernel;
mod runtime;

use std::path::PathBuf;

/// What one check found.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Pass(String),
    Fail { found: String, hint: String },
}

/// One check's name and outcome.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

impl Check {
    fn pass(name: &'static str, found: impl Into<String>) -> Check {
        Check { name, outcome: Outcome::Pass(found.into()) }
    }

    fn fail(name: &'static str, found: impl Into<String>, hint: impl Into<String>) -> Check {
        Check { name, outcome: Outcome::Fail { found: found.into(), hint: hint.into() } }
    }
}

/// Where tug would run: its data dir and its ports.
pub struct Host {
    pub data_dir: PathBuf,
    pub api_port: u16,
}

/// Every check, in the order they are shown.
pub fn run_checks(host: &Host) -> Vec<Check> {
    let mut checks = kernel::checks();
    checks.extend(runtime::checks());
    checks.extend(runtime::ports(host.api_port));
    checks.push(disk::check(&host.data_dir));
    checks
}

/// Runs `tug check-config`: prints each check; fails when any did.
pub fn run_command(args: crate::cli::CheckConfigArgs) -> anyhow::Result<()> {
    let host = Host {
        data_dir: args.data_dir.unwrap_or_else(crate::config::default_data_dir),
        api_port: args.https_listen_port,
    };
    let checks = run_checks(&host);
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut failed = 0;
    for check in &checks {
        match &check.outcome {
            Outcome::Pass(found) => println!("{:<width$}  pass  {found}", check.name),
            Outcome::Fail { found, hint } => {
                failed += 1;
                println!("{:<width$}  FAIL  {found}", check.name);
                println!("{:<width$}        hint: {hint}", "");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(anyhow::anyhow!("{n} of {} checks failed", checks.len())),
    }
}
