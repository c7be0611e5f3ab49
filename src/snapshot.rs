//! Store snapshots for backup and restore, as k3s's `etcd-snapshot`: consistent copies of the store file
//! in `<data-dir>/server/db/snapshots/` (or `--snapshot-dir`) named `<name>-<node>-<unix seconds>`,
//! taken on demand (`tug snapshot save`, beside a running server) or on a cron schedule by the server,
//! listed, deleted and pruned to the newest few of a name. A snapshot restores with
//! `tug server --cluster-reset --cluster-reset-restore-path FILE`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::cli::SnapshotAction;

/// The name of on-demand snapshots.
pub const ON_DEMAND: &str = "on-demand";
/// The name of scheduled snapshots.
pub const SCHEDULED: &str = "scheduled";

/// The server's scheduled snapshots.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: crate::core::cron::Schedule,
    /// Scheduled snapshots kept.
    pub retention: usize,
    pub dir: PathBuf,
}

/// Takes a snapshot of `data_dir`'s store at each scheduled time, then prunes the scheduled ones to the
/// newest `retention`; runs until aborted.
pub fn spawn_schedule(data_dir: PathBuf, schedule: Schedule, node: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tz = jiff::tz::TimeZone::system();
        while let Some(next) = schedule.cron.next_after(jiff::Timestamp::now(), &tz) {
            let wait = next.duration_since(jiff::Timestamp::now());
            tokio::time::sleep(std::time::Duration::try_from(wait).unwrap_or_default()).await;
            let (data_dir, schedule, node) = (data_dir.clone(), schedule.clone(), node.clone());
            let taken = tokio::task::spawn_blocking(move || -> anyhow::Result<(PathBuf, Vec<Snapshot>)> {
                let path = save(&data_dir, &schedule.dir, SCHEDULED, &node)?;
                Ok((path, prune(&schedule.dir, SCHEDULED, schedule.retention)?))
            })
            .await;
            match taken {
                Ok(Ok((path, pruned))) => {
                    tracing::info!(path = %path.display(), pruned = pruned.len(), "saved a scheduled store snapshot")
                }
                Ok(Err(error)) => tracing::error!(error = %format!("{error:#}"), "scheduled store snapshot failed"),
                Err(error) => tracing::error!(%error, "scheduled store snapshot failed"),
            }
        }
        tracing::warn!("the snapshot schedule names no future time; no more scheduled snapshots");
    })
}

/// Where snapshots go when no directory is given.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("snapshots")
}

/// The store file of a data dir.
pub fn store_file(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

/// One snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Unix seconds, from the name.
    pub created: u64,
}

/// `tug snapshot …`.
pub fn run_command(args: crate::cli::SnapshotArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(crate::config::default_data_dir);
    let dir = args.dir.unwrap_or_else(|| default_dir(&data_dir));
    match args.action {
        SnapshotAction::Save { name } => {
            let path = save(&data_dir, &dir, &name, &node_name())?;
            println!("Snapshot {} saved.", path.display());
        }
        SnapshotAction::Ls => {
            println!("{:<48} {:>12}  CREATED", "NAME", "SIZE");
            for snapshot in list(&dir)? {
                let created = jiff::Timestamp::from_second(snapshot.created as i64).map(|t| t.to_string());
                println!("{:<48} {:>12}  {}", snapshot.name, snapshot.size, created.unwrap_or_default());
            }
        }
        SnapshotAction::Delete { names } => {
            delete(&dir, &names)?;
            for name in names {
                println!("Snapshot {name} deleted.");
            }
        }
        SnapshotAction::Prune { name, snapshot_retention } => {
            for snapshot in prune(&dir, &name, snapshot_retention)? {
                println!("Snapshot {} deleted.", snapshot.name);
            }
        }
    }
    Ok(())
}

/// This machine's name, as snapshot names carry it.
pub fn node_name() -> String {
    hostname::get().map(|h| h.to_string_lossy().to_ascii_lowercase()).unwrap_or_else(|_| "tug".into())
}

/// Copies the store of `data_dir` into `dir` as `<name>-<node>-<now>`; its path.
pub fn save(data_dir: &Path, dir: &Path, name: &str, node: &str) -> anyhow::Result<PathBuf> {
    let store = store_file(data_dir);
    anyhow::ensure!(store.exists(), "no store at {}: is --data-dir the server's?", store.display());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let path = dir.join(format!("{name}-{node}-{now}"));
    crate::store::copy_database(&store, &path).with_context(|| format!("copying the store to {}", path.display()))?;
    Ok(path)
}

/// The snapshots in `dir`, oldest first.
pub fn list(dir: &Path) -> anyhow::Result<Vec<Snapshot>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut snapshots: Vec<Snapshot> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let created = name.rsplit_once('-')?.1.parse().ok()?;
            let metadata = entry.metadata().ok().filter(|m| m.is_file())?;
            Some(Snapshot { name, path: entry.path(), size: metadata.len(), created })
        })
        .collect();
    snapshots.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(snapshots)
}

/// Deletes the snapshots called `names` from `dir`; refuses names that are not snapshots there.
pub fn delete(dir: &Path, names: &[String]) -> anyhow::Result<()> {
    let existing = list(dir)?;
    for name in names {
        let snapshot = existing
            .iter()
            .find(|s| &s.name == name)
            .with_context(|| format!("no snapshot {name:?} in {}", dir.display()))?;
        std::fs::remove_file(&snapshot.path).with_context(|| format!("cannot delete {}", snapshot.path.display()))?;
    }
    Ok(())
}

/// Deletes all but the newest `keep` snapshots whose name starts with `<name>-`; the deleted ones.
pub fn prune(dir: &Path, name: &str, keep: usize) -> anyhow::Result<Vec<Snapshot>> {
    let prefix = format!("{name}-");
    let matching: Vec<Snapshot> = list(dir)?.into_iter().filter(|s| s.name.starts_with(&prefix)).collect();
    let excess = matching.len().saturating_sub(keep);
    let deleted: Vec<Snapshot> = matching.into_iter().take(excess).collect();
    for snapshot in &deleted {
        std::fs::remove_file(&snapshot.path).with_context(|| format!("cannot delete {}", snapshot.path.display()))?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"x").expect("write");
    }

    #[test]
    fn prune_keeps_the_newest_of_one_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        for created in [100, 300, 200] {
            touch(dir.path(), &format!("scheduled-node-a-{created}"));
        }
        touch(dir.path(), "on-demand-node-a-50");
        touch(dir.path(), "not-a-snapshot");
        let deleted = prune(dir.path(), SCHEDULED, 2).expect("prune");
        assert_eq!(deleted.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["scheduled-node-a-100"]);
        let left: Vec<String> = list(dir.path()).expect("list").into_iter().map(|s| s.name).collect();
        assert_eq!(left, ["on-demand-node-a-50", "scheduled-node-a-200", "scheduled-node-a-300"]);
    }

    #[test]
    fn deleting_an_unknown_snapshot_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "on-demand-node-a-50");
        let error = delete(dir.path(), &["on-demand-node-a-51".into()]).expect_err("unknown");
        assert!(error.to_string().contains("no snapshot \"on-demand-node-a-51\""), "{error}");
        delete(dir.path(), &["on-demand-node-a-50".into()]).expect("delete");
        assert!(list(dir.path()).expect("list").is_empty());
    }
}
