//! The data dir's disk: how long a small synced write takes there, which every write to the store waits
//! for (SD cards vary by two orders of magnitude).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Check;

const NAME: &str = "disk sync latency";
/// Synced writes timed.
const SAMPLES: usize = 20;
/// A median above this makes every API write slow.
const SLOW: Duration = Duration::from_millis(50);

pub fn check(data_dir: &Path) -> Check {
    let dir = nearest_existing(data_dir);
    match sync_latencies(&dir) {
        Ok(mut samples) => {
            samples.sort();
            let (median, worst) = (samples[SAMPLES / 2], samples[SAMPLES - 1]);
            let found =
                format!("median {median:.1?}, worst {worst:.1?} of {SAMPLES} 4 KiB fdatasyncs in {}", dir.display());
            match median <= SLOW {
                true => Check::pass(NAME, found),
                false => Check::fail(
                    NAME,
                    found,
                    format!("over {SLOW:?}: put the data dir on faster storage (a better SD card, or a USB SSD) with --data-dir"),
                ),
            }
        }
        Err(error) => Check::fail(
            NAME,
            format!("cannot write in {}: {error}", dir.display()),
            "run as root, or pass a writable --data-dir",
        ),
    }
}

/// `path` or its closest ancestor that exists (the data dir may not be made yet).
fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors().find(|p| p.is_dir()).unwrap_or(Path::new("/")).to_path_buf()
}

/// Times `SAMPLES` 4 KiB writes each followed by fdatasync, in a scratch file removed afterwards.
fn sync_latencies(dir: &Path) -> std::io::Result<Vec<Duration>> {
    let path = dir.join(format!(".tug-check-config-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        let block = [0u8; 4096];
        (0..SAMPLES)
            .map(|_| {
                let started = Instant::now();
                file.write_all(&block)?;
                file.sync_data()?;
                Ok(started.elapsed())
            })
            .collect()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_not_made_yet_is_timed_in_its_closest_ancestor() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(nearest_existing(&dir.path().join("a/b")), dir.path());
        let check = check(&dir.path().join("a/b"));
        let (super::super::Outcome::Pass(found) | super::super::Outcome::Fail { found, .. }) = check.outcome;
        assert!(found.contains("of 20 4 KiB fdatasyncs in"), "{found}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0, "the scratch file is left");
    }
}
