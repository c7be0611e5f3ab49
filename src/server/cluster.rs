//! The server's place in its cluster: the shared files fetched from a member when joining for the first
//! time (`--server`), the store's replication started over the peer certificate, and membership — a
//! group of one on a cluster's first start, or added through the member given by `--server`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::ServerConfig;
use crate::join::client::{self, ServerUrl};
use crate::join::Token;
use crate::replication::{Replication, Settings};
use crate::store::Store;

/// How long a new member waits to learn of a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a restarting member waiting for its group's leader says so.
const QUORUM_WAIT_LOG: Duration = Duration::from_secs(15);

/// Before a joining server's certificates exist: writes the cluster's CA and service account key,
/// fetched from the member (whose CA is checked against the token's hash), into `tls_dir`.
pub async fn fetch_shared_files(cfg: &ServerConfig, tls_dir: &Path) -> anyhow::Result<()> {
    let (Some(server), Some(token)) = (&cfg.join, &cfg.token) else { return Ok(()) };
    let ca_file = tls_dir.join(format!("{}.crt", crate::pki::CA_NAME));
    if ca_file.exists() {
        return Ok(());
    }
    let ca_pem = client::fetch_ca(server, token).await.context("fetching the cluster's CA")?;
    let bootstrap =
        client::fetch_server_bootstrap(server, token, &ca_pem).await.context("fetching the cluster's shared files")?;
    crate::fsutil::create_private_dir(tls_dir, 0o700)?;
    // The CA certificate last: its presence means the fetch is complete.
    for name in crate::pki::shared_files().into_iter().rev() {
        let pem = bootstrap.files.get(&name).with_context(|| format!("{server} did not hand over {name}"))?;
        let mode = if name.ends_with(".crt") { 0o644 } else { 0o600 };
        crate::fsutil::write_atomic(&tls_dir.join(&name), pem.as_bytes(), mode)?;
    }
    tracing::info!(%server, "received the cluster's CA and service account key");
    Ok(())
}

/// Starts the replication of `store`, reachable by the other servers at `address` (`host:port`).
pub async fn start_replication(
    store: &Store,
    cfg: &ServerConfig,
    db_dir: &Path,
    address: String,
    tls: &crate::pki::ServerTls,
    peer: Arc<crate::pki::LiveIdentity>,
) -> anyhow::Result<Arc<Replication>> {
    let client_tls = crate::apiserver::serve::client_tls_config_with(&tls.ca_cert_pem, peer)?;
    crate::replication::refuse_if_removed(db_dir)?;
    let settings = Settings {
        dir: db_dir.to_path_buf(),
        address,
        tls: Arc::new(client_tls),
        snapshot_entries: cfg.raft_snapshot_entries,
        snapshot_bytes: cfg.raft_snapshot_bytes,
        timing: cfg.raft_timing,
    };
    Replication::start(store, settings).await
}

/// `--cluster-reset`, before the store opens: puts the snapshot to restore (if any) in place of the
/// store file, then forgets the Raft log, vote and snapshots and the store's record of what it applied,
/// so that the server starts as a new group of one holding the store's contents.
pub fn reset_before_start(db_dir: &Path, restore: Option<&Path>) -> anyhow::Result<()> {
    let store = db_dir.join("state.db");
    crate::fsutil::create_private_dir(db_dir, 0o700)?;
    if let Some(snapshot) = restore {
        check_snapshot(snapshot)?;
        let incoming = db_dir.join("state.db.restoring");
        std::fs::copy(snapshot, &incoming).with_context(|| format!("cannot copy {}", snapshot.display()))?;
        std::fs::File::open(&incoming).and_then(|f| f.sync_all())?;
        for stale in ["state.db-wal", "state.db-shm"] {
            remove_if_present(&db_dir.join(stale))?;
        }
        std::fs::rename(&incoming, &store)?;
        std::fs::File::open(db_dir).and_then(|d| d.sync_all())?;
        tracing::info!(snapshot = %snapshot.display(), "restored the store from a snapshot");
    }
    if store.exists() {
        let conn = rusqlite::Connection::open(&store)?;
        let has_state: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'raft_applied')",
            [],
            |r| r.get(0),
        )?;
        if has_state {
            conn.execute("DELETE FROM raft_applied", [])?;
        }
    }
    // A new node id too: servers of the old group must not take the new group's messages for theirs.
    // A server removed from its old group may start the new one.
    for file in ["raft.db", "raft.db-wal", "raft.db-shm", "raft-id", crate::replication::REMOVED_MARKER] {
        remove_if_present(&db_dir.join(file))?;
    }
    match std::fs::remove_dir_all(db_dir.join("raft-snapshots")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Refuses a file that is not a sound tug store.
fn check_snapshot(path: &Path) -> anyhow::Result<()> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let check = || -> rusqlite::Result<(String, i64)> {
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        let integrity = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        let keys = conn.query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))?;
        Ok((integrity, keys))
    };
    match check() {
        Ok((integrity, _)) if integrity == "ok" => Ok(()),
        Ok((integrity, _)) => anyhow::bail!("{} is damaged: {integrity}", path.display()),
        Err(e) => anyhow::bail!("{} is not a tug store snapshot: {e}", path.display()),
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes this server a member if it is not one yet: through `--server` when given (after checking that
/// this server has the cluster's CA), else as a group of one. Returns once a leader is known.
pub async fn become_member(
    replication: &Replication,
    store: &Store,
    cfg: &ServerConfig,
    ca_pem: &str,
) -> anyhow::Result<()> {
    let restarting = replication.is_member().await?;
    if !restarting {
        match (&cfg.join, &cfg.token) {
            (Some(server), Some(token)) if cfg.cluster_reset.is_none() => {
                join(replication, server, token, ca_pem).await?
            }
            _ => {
                replication.initialize_alone().await?;
                tracing::info!(id = replication.id(), "started the cluster's store as a group of one server");
                replication.wait_for_leader(LEADER_TIMEOUT).await?;
                // A store with contents from before the group (a cluster reset, a data dir of a tug without
                // replication): the new log does not hold them, so servers joining later must start from
                // a snapshot of the store rather than from the log.
                if store.current_revision() > 0 {
                    replication.snapshot_and_purge().await?;
                }
            }
        }
    } else if let Some(server) = &cfg.join {
        tracing::info!(%server, "already a member of the cluster; --server is not needed to restart");
    }
    if restarting {
        replication.wait_for_leader_patiently(QUORUM_WAIT_LOG).await?;
    } else {
        replication.wait_for_leader(LEADER_TIMEOUT).await?;
    }
    replication.settle_membership().await
}

async fn join(replication: &Replication, server: &ServerUrl, token: &Token, ca_pem: &str) -> anyhow::Result<()> {
    let cluster_ca = client::fetch_ca(server, token).await.context("fetching the cluster's CA")?;
    if cluster_ca.trim() != ca_pem.trim() {
        anyhow::bail!(
            "this server's CA is not the cluster's ({server}): its data dir belongs to another cluster; \
             remove it (or use another --data-dir) to join"
        );
    }
    let via = crate::core::net::join_host_port(&server.host, server.port);
    tracing::info!(%server, id = replication.id(), "joining the cluster");
    replication.join(&via).await?;
    tracing::info!(%server, id = replication.id(), "joined the cluster as a voter");
    Ok(())
}
