//! `tug certificate`: lists tug's certificates on this machine with their expiry, and has its leaves
//! renewed: a server's (and its own node's kubelet serving certificate) set aside so that new ones are
//! issued, a joined agent's kubelet certificates marked for its renewal (the CA and the service account
//! key stay; a CA rotation is a documented procedure, docs/operations.md).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::{CertificateAction, CertificateArgs};

pub fn run_command(args: CertificateArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(crate::config::default_data_dir);
    match args.action {
        CertificateAction::Check => check(&data_dir),
        CertificateAction::Rotate { services } => rotate(&data_dir, &services),
    }
}

/// The certificate files of a server (`server/tls`) and an agent (`agent`, `agent/tls`).
fn certificate_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["server/tls", "agent", "agent/tls"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(data_dir.join(dir)).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "crt"))
        .collect();
    files.sort();
    files
}

fn check(data_dir: &Path) -> anyhow::Result<()> {
    let files = certificate_files(data_dir);
    anyhow::ensure!(!files.is_empty(), "no certificates under {} (is this tug's --data-dir?)", data_dir.display());
    let now = time::OffsetDateTime::now_utc();
    println!("{:<52} {:<36} {:<22} STATUS", "FILE", "SUBJECT", "EXPIRES");
    for file in files {
        let shown = file.strip_prefix(data_dir).unwrap_or(&file).display().to_string();
        let described =
            std::fs::read_to_string(&file).map_err(|e| e.to_string()).and_then(|pem| crate::pki::describe(&pem));
        match described {
            Ok((subject, not_after)) => {
                let days = (not_after - now).whole_days();
                let status = if not_after <= now {
                    "EXPIRED".to_string()
                } else if not_after <= crate::pki::renew_at() {
                    format!("{days} days left: renewed at the next check or start")
                } else {
                    format!("ok, {days} days left")
                };
                let expires = not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                println!("{shown:<52} {subject:<36} {expires:<22} {status}");
            }
            Err(reason) => println!("{shown:<52} {:<36} {:<22} UNREADABLE: {reason}", "", ""),
        }
    }
    Ok(())
}

/// How `rotate` has a leaf renewed.
enum Rotation {
    /// Moved aside from this dir: issued anew from the CA on disk.
    SetAside(PathBuf),
    /// A joined agent's: marked in its TLS dir, renewed by the running agent (or at its next start)
    /// with its current certificate, which stays in place until then.
    Mark(PathBuf),
}

/// The leaves `rotate` may renew on this machine and how: the server's (if it is one) and the kubelet's.
fn rotatable(data_dir: &Path) -> Vec<(&'static str, Rotation)> {
    let server = data_dir.join("server").join("tls");
    let kubelet = data_dir.join("agent").join("tls");
    let [client, _] = crate::pki::KUBELET_LEAF_NAMES;
    let joined = kubelet.join(format!("{client}.crt")).exists();
    let server_leaves = crate::pki::LEAF_NAMES
        .into_iter()
        .filter(|_| server.is_dir())
        .map(|name| (name, Rotation::SetAside(server.clone())));
    let kubelet_leaves = crate::pki::KUBELET_LEAF_NAMES
        .into_iter()
        .filter(|name| kubelet.join(format!("{name}.crt")).exists())
        .map(|name| (name, if joined { Rotation::Mark(kubelet.clone()) } else { Rotation::SetAside(kubelet.clone()) }));
    server_leaves.chain(kubelet_leaves).collect()
}

fn rotate(data_dir: &Path, services: &[String]) -> anyhow::Result<()> {
    let mut chosen = rotatable(data_dir);
    anyhow::ensure!(!chosen.is_empty(), "no certificates under {} (is this tug's --data-dir?)", data_dir.display());
    if !services.is_empty() {
        for service in services {
            anyhow::ensure!(
                chosen.iter().any(|(name, _)| name == service),
                "no {service} certificate under {}",
                data_dir.display()
            );
        }
        chosen.retain(|(name, _)| services.iter().any(|service| service == name));
    }
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    for (name, rotation) in chosen {
        match rotation {
            Rotation::SetAside(dir) => {
                let aside = dir.join(format!("rotated-{stamp}"));
                crate::fsutil::create_private_dir(&aside, 0o700)
                    .with_context(|| format!("cannot create {}", aside.display()))?;
                for file in [format!("{name}.crt"), format!("{name}.key")] {
                    match std::fs::rename(dir.join(&file), aside.join(&file)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e).with_context(|| format!("cannot move {file} aside")),
                    }
                }
                println!("{name}: set aside in {}", aside.display());
            }
            Rotation::Mark(dir) => {
                let mark = dir.join(crate::agent::credentials::RENEW_MARK);
                crate::fsutil::write_atomic(&mark, b"", 0o600)
                    .with_context(|| format!("cannot write {}", mark.display()))?;
                println!("{name}: renewal requested ({})", mark.display());
            }
        }
    }
    println!(
        "new certificates are issued when tug starts, or by a running server or agent at its next certificate check"
    );
    Ok(())
}
