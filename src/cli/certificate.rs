//! `tug certificate` flags: check the expiry of tug's certificates and rotate them (as k3s's
//! `certificate check|rotate`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Flags of `tug certificate`.
#[derive(Debug, Clone, Args)]
pub struct CertificateArgs {
    #[command(subcommand)]
    pub action: CertificateAction,

    /// Folder holding tug's state [default: /var/lib/tug, or $HOME/.tug when not root]
    #[arg(long, short = 'd', env = "TUG_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// What `tug certificate` does.
#[derive(Debug, Clone, Subcommand)]
pub enum CertificateAction {
    /// List the certificates of this server or agent: file, subject, expiry and status
    Check,
    /// Renew the leaf certificates of this machine: a server's (and its node's kubelet serving one) are
    /// set aside under rotated-<time>/ beside them and issued anew at the next start or check; an agent's
    /// kubelet certificates are marked, and renewed by the running agent at its next check
    Rotate {
        /// Only these certificates (by file name without .crt, as `check` lists them)
        #[arg(long = "service", value_parser = clap::builder::PossibleValuesParser::new(crate::pki::LEAF_NAMES.into_iter().chain(crate::pki::KUBELET_LEAF_NAMES)))]
        services: Vec<String>,
    },
}
