//! Reading image archives for air-gapped import: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`) or a `docker save` archive (`manifest.json` naming a config and layer files),
//! plain `.tar` or zstd-compressed `.tar.zst`. The archive is read twice and never held in memory:
//! [`scan`] hashes every file and keeps the small ones (manifests, indexes, configs) to plan the import;
//! [`for_each_blob`] then streams the blobs the plan names. A docker archive gets an OCI manifest
//! made for it, as containerd's importer does.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Files up to this size are kept from the first pass (manifests, indexes and configs are far smaller).
const KEEP_UNDER: u64 = 1 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Archive problems; the archive is skipped with this message.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A content blob: its digest (`sha256:<hex>`), size and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
}

/// Where a blob's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file of the archive, by its path there.
    Entry(String),
    /// Made during planning (a docker archive's manifest).
    Made(Vec<u8>),
}

/// One blob to store, with the garbage-collection labels that tie its children to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: i64,
    pub source: Source,
    pub labels: BTreeMap<String, String>,
}

/// What importing an archive does: store the blobs, then point each named image at its target.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub blobs: Vec<Blob>,
    pub images: Vec<(String, Descriptor)>,
}

/// A file of the archive as the first pass saw it.
struct Scanned {
    digest: String,
    size: u64,
    head: Vec<u8>,
    bytes: Option<Vec<u8>>,
}

fn open(path: &Path) -> Result<Box<dyn Read>, ArchiveError> {
    let io = |source| ArchiveError::Io { path: path.to_path_buf(), source };
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    if path.to_string_lossy().ends_with(".zst") {
        let decoder = ruzstd::decoding::StreamingDecoder::new(file)
            .map_err(|e| ArchiveError::Invalid { path: path.to_path_buf(), reason: format!("not zstd: {e}") })?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(file))
    }
}

fn entry_name(entry: &tar::Entry<'_, impl Read>) -> Option<String> {
    let path = entry.path().ok()?;
    let name = path.to_string_lossy();
    Some(name.trim_start_matches("./").to_string())
}

/// First pass: hashes every regular file, keeping the small ones.
fn scan_files(path: &Path) -> Result<HashMap<String, Scanned>, ArchiveError> {
    let io = |source| ArchiveError::Io { path: path.to_path_buf(), source };
    let mut archive = tar::Archive::new(open(path)?);
    let mut files = HashMap::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Some(name) = entry_name(&entry) else { continue };
        let size = entry.size();
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let mut kept = (size <= KEEP_UNDER).then(Vec::new);
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buffer).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            if head.len() < 4 {
                head.extend(buffer[..n].iter().take(4 - head.len()));
            }
            if let Some(kept) = kept.as_mut() {
                kept.extend_from_slice(&buffer[..n]);
            }
        }
        let digest = format!("sha256:{:x}", hasher.finalize());
        files.insert(name, Scanned { digest, size, head, bytes: kept });
    }
    Ok(files)
}

/// Reads the archive and plans its import.
pub fn scan(path: &Path) -> Result<Plan, ArchiveError> {
    let files = scan_files(path)?;
    let invalid = |reason: String| ArchiveError::Invalid { path: path.to_path_buf(), reason };
    if files.contains_key("index.json") {
        plan_oci(&files).map_err(invalid)
    } else if files.contains_key("manifest.json") {
        plan_docker(&files).map_err(invalid)
    } else {
        Err(invalid("neither an OCI image layout (index.json) nor a docker archive (manifest.json)".into()))
    }
}

fn json_of(files: &HashMap<String, Scanned>, name: &str) -> Result<Value, String> {
    let bytes = files.get(name).and_then(|f| f.bytes.as_deref()).ok_or_else(|| format!("{name} is missing"))?;
    serde_json::from_slice(bytes).map_err(|e| format!("{name}: {e}"))
}

fn descriptor_of(value: &Value) -> Option<Descriptor> {
    Some(Descriptor {
        media_type: value["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string(),
        digest: value["digest"].as_str()?.to_string(),
        size: value["size"].as_i64()?,
    })
}

/// containerd's labels naming a manifest's or index's children, so its collector keeps them.
fn child_labels(document: &Value) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(config) = document["config"]["digest"].as_str() {
        labels.insert("containerd.io/gc.ref.content.config".to_string(), config.to_string());
    }
    for (i, layer) in document["layers"].as_array().into_iter().flatten().enumerate() {
        if let Some(digest) = layer["digest"].as_str() {
            labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), digest.to_string());
        }
    }
    for (i, manifest) in document["manifests"].as_array().into_iter().flatten().enumerate() {
        if let Some(digest) = manifest["digest"].as_str() {
            labels.insert(format!("containerd.io/gc.ref.content.m.{i}"), digest.to_string());
        }
    }
    labels
}

/// An OCI layout: every blob under blobs/, images named by their descriptors' annotations.
fn plan_oci(files: &HashMap<String, Scanned>) -> Result<Plan, String> {
    let index = json_of(files, "index.json")?;
    let mut plan = Plan::default();
    let mut names: Vec<&String> = files.keys().filter(|n| n.starts_with("blobs/")).collect();
    names.sort();
    for name in names {
        let mut parts = name.trim_start_matches("blobs/").splitn(2, '/');
        let (Some(algorithm), Some(hex)) = (parts.next(), parts.next()) else { continue };
        let digest = format!("{algorithm}:{hex}");
        let file = &files[name];
        if algorithm == "sha256" && file.digest != digest {
            return Err(format!("{name} does not match its digest"));
        }
        let labels = file
            .bytes
            .as_deref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .map(|doc| child_labels(&doc))
            .unwrap_or_default();
        plan.blobs.push(Blob { digest, size: file.size as i64, source: Source::Entry(name.clone()), labels });
    }
    for manifest in index["manifests"].as_array().into_iter().flatten() {
        let Some(target) = descriptor_of(manifest) else { continue };
        let annotations = &manifest["annotations"];
        let name = annotations["io.containerd.image.name"]
            .as_str()
            .or_else(|| annotations["org.opencontainers.image.ref.name"].as_str().filter(|n| is_full_reference(n)));
        if let Some(name) = name {
            plan.images.push((normalize(name), target));
        }
    }
    if plan.images.is_empty() {
        return Err("index.json names no image (no io.containerd.image.name annotation)".into());
    }
    Ok(plan)
}

/// A docker archive: each manifest.json entry becomes an OCI manifest over its config and layers.
fn plan_docker(files: &HashMap<String, Scanned>) -> Result<Plan, String> {
    let entries = json_of(files, "manifest.json")?;
    let mut plan = Plan::default();
    let mut stored: Vec<String> = Vec::new();
    for entry in entries.as_array().into_iter().flatten() {
        let config_name = entry["Config"].as_str().ok_or("manifest.json: an entry has no Config")?;
        let config = files.get(config_name).ok_or_else(|| format!("{config_name} is missing"))?;
        let mut layers = Vec::new();
        for layer in entry["Layers"].as_array().into_iter().flatten() {
            let layer_name = layer.as_str().ok_or("manifest.json: a layer is not a file name")?;
            let file = files.get(layer_name).ok_or_else(|| format!("{layer_name} is missing"))?;
            layers.push((layer_name, file));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": layers.iter().map(|(_, f)| json!({"mediaType": layer_media_type(&f.head), "digest": f.digest, "size": f.size})).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
        let target = Descriptor { media_type: OCI_MANIFEST.into(), digest: digest.clone(), size: bytes.len() as i64 };
        let parts = std::iter::once((config_name, config)).chain(layers.iter().copied());
        for (name, file) in parts {
            if !stored.contains(&file.digest) {
                stored.push(file.digest.clone());
                plan.blobs.push(Blob {
                    digest: file.digest.clone(),
                    size: file.size as i64,
                    source: Source::Entry(name.to_string()),
                    labels: BTreeMap::new(),
                });
            }
        }
        let labels = child_labels(&manifest);
        plan.blobs.push(Blob { digest, size: bytes.len() as i64, source: Source::Made(bytes), labels });
        for tag in entry["RepoTags"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            plan.images.push((normalize(tag), target.clone()));
        }
    }
    if plan.images.is_empty() {
        return Err("manifest.json names no image (no RepoTags)".into());
    }
    Ok(plan)
}

fn layer_media_type(head: &[u8]) -> &'static str {
    match head {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    }
}

/// Whether `name` is a whole reference (a repository with a tag or digest), not a bare tag.
fn is_full_reference(name: &str) -> bool {
    name.contains('/') || name.contains(':') && !name.starts_with(':')
}

/// A reference as containerd and the CRI name it: `busybox` is `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> String {
    let (first, rest) = reference.split_once('/').unwrap_or(("", reference));
    let has_domain = first.contains('.') || first.contains(':') || first == "localhost";
    let mut full = match (has_domain, first.is_empty()) {
        (true, _) => reference.to_string(),
        (false, true) => format!("docker.io/library/{rest}"),
        (false, false) => format!("docker.io/{reference}"),
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        full.push_str(":latest");
    }
    full
}

/// Second pass: calls `each` with every blob of `wanted` (archive entry name → blob) and its bytes.
pub fn for_each_blob(
    path: &Path,
    wanted: &HashMap<String, &Blob>,
    mut each: impl FnMut(&Blob, &mut dyn Read) -> std::io::Result<()>,
) -> Result<(), ArchiveError> {
    let io = |source| ArchiveError::Io { path: path.to_path_buf(), source };
    let mut archive = tar::Archive::new(open(path)?);
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let Some(name) = entry_name(&entry) else { continue };
        if let Some(blob) = wanted.get(&name) {
            each(blob, &mut entry).map_err(io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(bytes))
    }

    fn write_tar(path: &Path, files: &[(&str, Vec<u8>)]) {
        let mut builder = tar::Builder::new(std::fs::File::create(path).expect("create"));
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, bytes.as_slice()).expect("append");
        }
        builder.finish().expect("finish");
    }

    #[test]
    fn names_are_normalized_as_the_cri_sees_them() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("library/busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(normalize("tug.local/pause:1"), "tug.local/pause:1");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
    }

    #[test]
    fn an_oci_layout_names_its_images_and_labels_manifest_children() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = b"layer bytes".to_vec();
        let config = br#"{"architecture":"amd64"}"#.to_vec();
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}]}))
        .expect("json");
        let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST,
            "digest": sha(&manifest), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": "tug.local/busybox:1"}}]}))
        .expect("json");
        let blob = |b: &[u8]| format!("blobs/sha256/{}", sha(b).trim_start_matches("sha256:"));
        let path = dir.path().join("image.tar");
        write_tar(
            &path,
            &[
                ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
                ("index.json", index),
                (&blob(&layer), layer.clone()),
                (&blob(&config), config.clone()),
                (&blob(&manifest), manifest.clone()),
            ],
        );
        let plan = scan(&path).expect("plan");
        assert_eq!(plan.images.len(), 1);
        assert_eq!(plan.images[0].0, "tug.local/busybox:1");
        assert_eq!(plan.images[0].1.digest, sha(&manifest));
        assert_eq!(plan.blobs.len(), 3);
        let manifest_blob = plan.blobs.iter().find(|b| b.digest == sha(&manifest)).expect("manifest blob");
        assert_eq!(manifest_blob.labels["containerd.io/gc.ref.content.config"], sha(&config));
        assert_eq!(manifest_blob.labels["containerd.io/gc.ref.content.l.0"], sha(&layer));

        let wanted: HashMap<String, &Blob> = plan
            .blobs
            .iter()
            .filter_map(|b| match &b.source {
                Source::Entry(name) => Some((name.clone(), b)),
                Source::Made(_) => None,
            })
            .collect();
        let mut seen = Vec::new();
        for_each_blob(&path, &wanted, |blob, reader| {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes)?;
            assert_eq!(sha(&bytes), blob.digest);
            seen.push(blob.digest.clone());
            Ok(())
        })
        .expect("second pass");
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_docker_archive_gets_a_manifest_and_its_repo_tags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut layer = vec![0x1f, 0x8b];
        layer.extend_from_slice(b"gzip-ish");
        let config = br#"{"architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let manifest =
            serde_json::to_vec(&json!([{"Config": "cfg.json", "RepoTags": ["busybox:1"], "Layers": ["l1/layer.tar"]}]))
                .expect("json");
        let path = dir.path().join("image.tar");
        write_tar(&path, &[("manifest.json", manifest), ("cfg.json", config.clone()), ("l1/layer.tar", layer.clone())]);
        let plan = scan(&path).expect("plan");
        assert_eq!(plan.images[0].0, "docker.io/library/busybox:1");
        let made = plan.blobs.iter().find(|b| matches!(b.source, Source::Made(_))).expect("made manifest");
        assert_eq!(plan.images[0].1.digest, made.digest);
        let Source::Made(bytes) = &made.source else { unreachable!() };
        let doc: Value = serde_json::from_slice(bytes).expect("json");
        assert_eq!(doc["config"]["digest"], sha(&config));
        assert_eq!(doc["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        assert_eq!(doc["layers"][0]["digest"], sha(&layer));
    }

    #[test]
    fn a_zstd_compressed_archive_reads_as_the_plain_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = br#"{"architecture":"amd64"}"#.to_vec();
        let manifest =
            serde_json::to_vec(&json!([{"Config": "cfg.json", "RepoTags": ["tug.local/z:1"], "Layers": []}]))
                .expect("json");
        let plain = dir.path().join("image.tar");
        write_tar(&plain, &[("manifest.json", manifest), ("cfg.json", config)]);
        let compressed = dir.path().join("image.tar.zst");
        let bytes = std::fs::read(&plain).expect("read");
        let zstd = ruzstd::encoding::compress_to_vec(bytes.as_slice(), ruzstd::encoding::CompressionLevel::Fastest);
        std::fs::write(&compressed, zstd).expect("write");
        assert_eq!(scan(&compressed).expect("zstd plan"), scan(&plain).expect("plain plan"));
    }

    #[test]
    fn other_tars_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.tar");
        write_tar(&path, &[("hello.txt", b"hi".to_vec())]);
        let error = scan(&path).expect_err("not an image").to_string();
        assert!(error.contains("neither an OCI image layout"), "{error}");
    }
}
