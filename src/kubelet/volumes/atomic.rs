//! Writing a volume's files so that a container never sees half an update, as upstream's AtomicWriter:
//! the files live in a timestamped directory `..<time>`, the symlink `..data` points at the current one,
//! and every top-level name is a symlink through `..data`. An update writes a new directory, swaps
//! `..data` with one rename, then fixes the top-level links and removes the old directory. Nothing is
//! written when the content is unchanged.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a volume: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// Files by their path relative to the volume.
pub type Payload = BTreeMap<PathBuf, File>;

/// Whether `path` is a plain relative path (no `..`, not absolute, not starting with `..`).
pub fn is_safe(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && !path.to_string_lossy().starts_with("..")
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// What the current directory holds, if it holds exactly `payload`.
fn unchanged(current: &Path, payload: &Payload) -> bool {
    let mut count = 0;
    for (path, file) in payload {
        let full = current.join(path);
        let same_bytes = std::fs::read(&full).is_ok_and(|b| b == file.bytes);
        let same_mode = std::fs::metadata(&full).is_ok_and(|m| m.permissions().mode() & 0o777 == file.mode);
        if !same_bytes || !same_mode {
            return false;
        }
        count += 1;
    }
    walk(current).is_ok_and(|files| files.len() == count)
}

/// Every file under `dir`, relative to it.
fn walk(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// Makes `dir` show exactly `payload`; returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    if let Some(bad) = payload.keys().find(|p| !is_safe(p)) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid path {}", bad.display())));
    }
    std::fs::create_dir_all(dir)?;
    let current = std::fs::read_link(dir.join(DATA)).ok();
    if current.as_ref().is_some_and(|c| unchanged(&dir.join(c), payload)) {
        return Ok(false);
    }
    let stamp = jiff::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.%f").to_string();
    let fresh = dir.join(&stamp);
    std::fs::create_dir(&fresh)?;
    for (path, file) in payload {
        let full = fresh.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&full, &file.bytes)?;
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(file.mode))?;
    }
    let _ = std::fs::remove_file(dir.join(DATA_TMP));
    symlink(&stamp, dir.join(DATA_TMP))?;
    std::fs::rename(dir.join(DATA_TMP), dir.join(DATA))?;
    let top: std::collections::BTreeSet<PathBuf> =
        payload.keys().filter_map(|p| p.components().next()).map(|c| PathBuf::from(c.as_os_str())).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let name = PathBuf::from(entry?.file_name());
        let hidden = name.to_string_lossy().starts_with("..");
        if !hidden && !top.contains(&name) {
            std::fs::remove_file(dir.join(&name))?;
        }
    }
    if let Some(old) = current.filter(|old| *old != Path::new(&stamp)) {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(entries: &[(&str, &str)]) -> Payload {
        entries.iter().map(|(p, b)| (PathBuf::from(p), File { bytes: b.as_bytes().to_vec(), mode: 0o644 })).collect()
    }

    #[test]
    fn updates_swap_the_whole_content_and_unchanged_content_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(dir.path(), &payload(&[("color", "blue"), ("nested/size", "9")])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join("color")).unwrap(), "blue");
        assert_eq!(std::fs::read_to_string(dir.path().join("nested/size")).unwrap(), "9");
        assert!(std::fs::symlink_metadata(dir.path().join("color")).unwrap().file_type().is_symlink());
        assert!(!write(dir.path(), &payload(&[("color", "blue"), ("nested/size", "9")])).unwrap());

        assert!(write(dir.path(), &payload(&[("color", "red")])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join("color")).unwrap(), "red");
        assert!(!dir.path().join("nested").exists(), "a key no longer there is gone");
        let entries: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries.len(), 3, "the link, ..data and one timestamped directory: {entries:?}");
    }

    #[test]
    fn paths_leaving_the_volume_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../escape", "/abs", "..hidden", "a/../../b"] {
            assert!(write(dir.path(), &payload(&[(bad, "x")])).is_err(), "{bad}");
        }
    }
}
