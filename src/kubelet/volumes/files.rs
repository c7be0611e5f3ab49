//! The files of the volumes made from API objects and the pod itself: configMap and secret (every key,
//! or the items asked for, with their modes), downwardAPI (the pod's metadata fields and its
//! containers' resources), and projected (several of these and service account tokens in one
//! directory).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};
use kube::ResourceExt;

use super::atomic::{File, Payload};
use super::Sources;
use crate::kubelet::sources;

/// Upstream's default file mode of these volumes (0644).
const DEFAULT_MODE: i32 = 0o644;

/// The files `volume` shows.
pub async fn payload(sources: &Sources<'_>, pod: &Pod, volume: &Volume) -> Result<Payload, String> {
    let (client, namespace) = (sources.client, pod.namespace().unwrap_or_default());
    if let Some(source) = &volume.config_map {
        let data = sources::config_map(client, &namespace, &source.name).await?;
        let found = Found { data, kind: "configmap", name: &source.name, optional: source.optional.unwrap_or(false) };
        return found.files(source.items.as_deref(), mode(source.default_mode));
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let data = sources::secret(client, &namespace, &name).await?;
        let found = Found { data, kind: "secret", name: &name, optional: source.optional.unwrap_or(false) };
        return found.files(source.items.as_deref(), mode(source.default_mode));
    }
    if let Some(source) = &volume.downward_api {
        return downward(
            pod,
            source.items.as_deref().unwrap_or_default(),
            mode(source.default_mode),
            sources.allocatable,
        );
    }
    let Some(projected) = &volume.projected else { return Ok(Payload::new()) };
    let default_mode = mode(projected.default_mode);
    let mut files = Payload::new();
    for source in projected.sources.iter().flatten() {
        let part = if let Some(c) = &source.config_map {
            let data = sources::config_map(client, &namespace, &c.name).await?;
            let found = Found { data, kind: "configmap", name: &c.name, optional: c.optional.unwrap_or(false) };
            found.files(c.items.as_deref(), default_mode)?
        } else if let Some(s) = &source.secret {
            let data = sources::secret(client, &namespace, &s.name).await?;
            let found = Found { data, kind: "secret", name: &s.name, optional: s.optional.unwrap_or(false) };
            found.files(s.items.as_deref(), default_mode)?
        } else if let Some(d) = &source.downward_api {
            downward(pod, d.items.as_deref().unwrap_or_default(), default_mode, sources.allocatable)?
        } else if let Some(t) = &source.service_account_token {
            let token = sources.tokens.token(pod, t.audience.as_deref(), t.expiration_seconds.unwrap_or(3600)).await?;
            Payload::from([(PathBuf::from(&t.path), File { bytes: token.into_bytes(), mode: default_mode })])
        } else {
            return Err("this projected volume source is not supported by tug".into());
        };
        files.extend(part);
    }
    Ok(files)
}

/// Permission bits only: no setuid, setgid or sticky bit on files the kubelet writes as root.
fn mode(mode: Option<i32>) -> u32 {
    (mode.unwrap_or(DEFAULT_MODE) & 0o777) as u32
}

/// A ConfigMap's or Secret's keys, as read.
struct Found<'a> {
    data: Option<BTreeMap<String, Vec<u8>>>,
    kind: &'a str,
    name: &'a str,
    optional: bool,
}

impl Found<'_> {
    /// Every key as a file of its name, or the `items` asked for; a missing object or key is an error
    /// unless the source is optional.
    fn files(self, items: Option<&[KeyToPath]>, default_mode: u32) -> Result<Payload, String> {
        let Some(data) = self.data else {
            return match self.optional {
                true => Ok(Payload::new()),
                false => Err(format!("{} {:?} not found", self.kind, self.name)),
            };
        };
        let Some(items) = items else {
            let all = data.into_iter().map(|(key, bytes)| (PathBuf::from(key), File { bytes, mode: default_mode }));
            return Ok(all.collect());
        };
        let mut files = Payload::new();
        for item in items {
            let Some(bytes) = data.get(&item.key) else {
                if self.optional {
                    continue;
                }
                return Err(format!("{} references non-existent {} key: {}", self.kind, self.kind, item.key));
            };
            let mode = item.mode.map_or(default_mode, |m| mode(Some(m)));
            files.insert(PathBuf::from(&item.path), File { bytes: bytes.clone(), mode });
        }
        Ok(files)
    }
}

/// The downward API's files: each item's field of the pod.
fn downward(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    allocatable: &serde_json::Value,
) -> Result<Payload, String> {
    let mut files = Payload::new();
    for item in items {
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), _) => match field.field_path.as_str() {
                "metadata.labels" => format_map(pod.labels()),
                "metadata.annotations" => format_map(pod.annotations()),
                path => crate::kubelet::pods::spec::field_value(pod, path, "", "", "")
                    .ok_or_else(|| format!("unsupported fieldPath {path:?}"))?,
            },
            (None, Some(selector)) => crate::kubelet::pods::resource_field::value(pod, "", selector, allocatable)?,
            (None, None) => continue,
        };
        let mode = item.mode.map_or(default_mode, |m| mode(Some(m)));
        files.insert(PathBuf::from(&item.path), File { bytes: value.into_bytes(), mode });
    }
    Ok(files)
}

/// Labels or annotations as upstream writes them: `key="value"` lines in key order, values quoted as
/// Go quotes strings.
fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(key, value)| format!("{key}={}", go_quote(value))).collect::<Vec<_>>().join("\n")
}

fn go_quote(value: &str) -> String {
    let mut quoted = String::from('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_files_and_items_pick_and_rename_them() {
        let data = BTreeMap::from([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())]);
        let found = |data| Found { data, kind: "configmap", name: "cfg", optional: false };
        let all = found(Some(data.clone())).files(None, 0o644).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), [&PathBuf::from("a"), &PathBuf::from("b")]);
        let item = KeyToPath { key: "b".into(), path: "dir/renamed".into(), mode: Some(0o600) };
        let picked = found(Some(data.clone())).files(Some(&[item]), 0o644).unwrap();
        assert_eq!(picked[&PathBuf::from("dir/renamed")], File { bytes: b"2".to_vec(), mode: 0o600 });
        let missing = KeyToPath { key: "c".into(), path: "c".into(), mode: None };
        assert!(found(Some(data))
            .files(Some(&[missing]), 0o644)
            .unwrap_err()
            .contains("non-existent configmap key: c"));
        assert_eq!(found(None).files(None, 0o644).unwrap_err(), "configmap \"cfg\" not found");
        let optional = Found { data: None, kind: "secret", name: "s", optional: true };
        assert!(optional.files(None, 0o644).unwrap().is_empty());
    }

    #[test]
    fn labels_are_written_as_upstream_formats_them() {
        let map = BTreeMap::from([("b".to_string(), "two \"words\"".to_string()), ("a".to_string(), "1".to_string())]);
        assert_eq!(format_map(&map), "a=\"1\"\nb=\"two \\\"words\\\"\"");
    }
}
