//! Container log rotation, so that a chatty container never fills the disk (upstream's
//! containerLogManager): every [`CHECK_EVERY`], each running container's CRI log file larger than the
//! maximum size is renamed with a timestamp and the runtime is told to reopen it; rotated files beyond
//! the maximum count are removed, oldest first, and all but the newest rotated file are gzip-compressed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest, ListContainersRequest,
    ReopenContainerLogRequest,
};
use tokio::sync::watch;

use super::cri::Cri;

/// How often log sizes are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// How large a container's log may grow and how many files (the current one included) are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_size: u64,
    pub max_files: usize,
}

impl Default for Policy {
    /// Upstream's defaults: 10 MiB, 5 files.
    fn default() -> Policy {
        Policy { max_size: 10 * 1024 * 1024, max_files: 5 }
    }
}

/// Rotated files of `log`, oldest first (their names sort by their timestamps).
fn rotated(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else { return Vec::new() };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn gzip(path: &Path) -> std::io::Result<()> {
    let compressed = PathBuf::from(format!("{}.gz", path.display()));
    let temporary = PathBuf::from(format!("{}.tmp", compressed.display()));
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(&temporary)?, flate2::Compression::fast());
    std::io::copy(&mut std::io::BufReader::new(std::fs::File::open(path)?), &mut encoder)?;
    encoder.flush()?;
    encoder.finish()?.sync_all()?;
    std::fs::rename(&temporary, &compressed)?;
    std::fs::remove_file(path)
}

/// If `log` is larger than the policy allows: removes the oldest rotated files until the rotation will
/// leave `max_files` in all, compresses every rotated file but the newest, renames `log` to
/// `<log>.<timestamp>` and returns that name (the runtime must reopen the log), in upstream's order.
pub fn rotate_if_needed(log: &Path, policy: Policy, now: jiff::Timestamp) -> std::io::Result<Option<PathBuf>> {
    let size = match std::fs::metadata(log) {
        Ok(metadata) => metadata.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if size <= policy.max_size {
        return Ok(None);
    }
    let mut old = rotated(log);
    // The current file and the one this rotation makes count among max_files.
    let keep = policy.max_files.saturating_sub(2);
    while old.len() > keep {
        std::fs::remove_file(old.remove(0))?;
    }
    if let Some((_, older)) = old.split_last() {
        for path in older.iter().filter(|p| p.extension().is_none_or(|e| e != "gz")) {
            gzip(path)?;
        }
    }
    let stamp = now.strftime("%Y%m%d-%H%M%S").to_string();
    let rotated_to = PathBuf::from(format!("{}.{stamp}", log.display()));
    std::fs::rename(log, &rotated_to)?;
    Ok(Some(rotated_to))
}

/// Checks the running containers' logs until `stop` turns true.
pub async fn run(mut cri: Cri, policy: Policy, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let running = ContainerFilter {
            state: Some(ContainerStateValue { state: ContainerState::ContainerRunning as i32 }),
            ..Default::default()
        };
        let Ok(listed) = cri.runtime.list_containers(ListContainersRequest { filter: Some(running) }).await else {
            continue;
        };
        for container in listed.into_inner().containers {
            let request = ContainerStatusRequest { container_id: container.id.clone(), verbose: false };
            let Ok(Some(status)) = cri.runtime.container_status(request).await.map(|r| r.into_inner().status) else {
                continue;
            };
            let log = PathBuf::from(&status.log_path);
            // File work (compression above all) stays off the runtime's threads.
            let rotating = log.clone();
            let rotated =
                tokio::task::spawn_blocking(move || rotate_if_needed(&rotating, policy, jiff::Timestamp::now())).await;
            match rotated.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
                Ok(None) => {}
                Ok(Some(rotated_to)) => {
                    let reopen = ReopenContainerLogRequest { container_id: container.id.clone() };
                    if let Err(error) = cri.runtime.reopen_container_log(reopen).await {
                        // The runtime still writes the renamed file: give it its name back (as upstream).
                        tracing::warn!(%error, log = %log.display(), "the runtime did not reopen a rotated log");
                        let _ = std::fs::rename(&rotated_to, &log);
                    }
                }
                Err(error) => tracing::warn!(%error, log = %log.display(), "cannot rotate a container log"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_log_is_rotated_and_old_files_are_compressed_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let policy = Policy { max_size: 10, max_files: 4 };
        let at = |s: i64| jiff::Timestamp::from_second(1_700_000_000 + s).unwrap();
        std::fs::write(&log, "short").unwrap();
        assert!(rotate_if_needed(&log, policy, at(0)).unwrap().is_none(), "under the size");
        for second in 1..=4 {
            std::fs::write(&log, "more than ten bytes").unwrap();
            assert!(rotate_if_needed(&log, policy, at(second)).unwrap().is_some());
            assert!(!log.exists(), "renamed for the runtime to reopen");
        }
        assert!(rotate_if_needed(&log, policy, at(5)).unwrap().is_none(), "nothing to rotate");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["0.log.20231114-221322.gz", "0.log.20231114-221323", "0.log.20231114-221324"],
            "max_files 4: three rotated (the older ones compressed) beside the current"
        );
    }
}
