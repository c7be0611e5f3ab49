//! Auto-deployed manifests, as k3s's: every `*.yaml`, `*.yml` and `*.json` file in
//! `<data-dir>/server/manifests/` is applied at start and whenever its content changes, by server-side
//! apply with the field manager `tug` (conflicts forced: the file is the source of truth). A file with a
//! `<name>.skip` beside it is left alone; deleting a file deletes none of its objects. Each outcome is an
//! Event on the kube-system Namespace (`kubectl -n kube-system get events`). A file that fails is
//! tried again on every pass, so one whose kinds are defined by a CRD applied later goes through then.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use sha2::{Digest, Sha256};

use crate::events::{EventType, Recorder};

/// How often the folder is read again.
const PASS_EVERY: Duration = Duration::from_secs(5);
/// The field manager of every applied object.
pub const FIELD_MANAGER: &str = "tug";

/// Why a manifest file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {index}: {message}")]
    Parse { index: usize, message: String },
    #[error("document {index} ({kind} {name}): {source}")]
    Apply { index: usize, kind: String, name: String, source: kube::Error },
}

/// Applies the folder's manifests now and after every change, until the task is dropped.
pub async fn run(client: kube::Client, dir: PathBuf) {
    if let Err(error) = std::fs::create_dir_all(&dir) {
        tracing::error!(%error, dir = %dir.display(), "cannot create the manifests folder");
    }
    let recorder = Recorder::new(client.clone(), "tug-manifests");
    // Each file's content digest and its last outcome (None: applied), so that an outcome is recorded
    // once rather than at every retry.
    let mut outcomes: HashMap<PathBuf, ([u8; 32], Option<String>)> = HashMap::new();
    loop {
        let files = manifest_files(&dir);
        outcomes.retain(|path, _| files.contains(path));
        for path in files {
            let Ok(content) = std::fs::read_to_string(&path) else { continue };
            let digest: [u8; 32] = Sha256::digest(content.as_bytes()).into();
            if outcomes.get(&path).is_some_and(|(seen, failure)| *seen == digest && failure.is_none()) {
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let (kind, reason, message, failure) = match apply_file(&client, &content).await {
                Ok(count) => {
                    tracing::info!(file = %name, objects = count, "applied a manifest");
                    (
                        EventType::Normal,
                        "AppliedManifest",
                        format!("applied {count} objects from manifests/{name}"),
                        None,
                    )
                }
                Err(error) => {
                    let message = format!("manifests/{name}: {error}");
                    (EventType::Warning, "ManifestFailed", message.clone(), Some(message))
                }
            };
            let repeated = outcomes.get(&path).is_some_and(|(seen, last)| *seen == digest && *last == failure);
            if !repeated {
                if failure.is_some() {
                    tracing::warn!(file = %name, "cannot apply a manifest: {message}");
                }
                recorder.record(&crate::events::kube_system_namespace(), kind, reason, &message).await;
            }
            outcomes.insert(path, (digest, failure));
        }
        tokio::time::sleep(PASS_EVERY).await;
    }
}

/// The folder's manifest files without a `.skip` beside them, by name (the order they are applied in).
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json"))
        .filter(|path| {
            let mut skip = path.clone().into_os_string();
            skip.push(".skip");
            !Path::new(&skip).exists()
        })
        .collect();
    files.sort();
    files
}

/// Applies every object of a file's content, in order; how many there were.
async fn apply_file(client: &kube::Client, content: &str) -> Result<usize, ManifestError> {
    let objects = documents(content)?;
    for (index, object) in objects.iter().enumerate() {
        apply_object(client, index, object).await?;
    }
    Ok(objects.len())
}

async fn apply_object(client: &kube::Client, index: usize, object: &DynamicObject) -> Result<(), ManifestError> {
    let types = object.types.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let failed = |source| ManifestError::Apply { index, kind: types.kind.clone(), name: name.clone(), source };
    let (group, version) = types.api_version.rsplit_once('/').unwrap_or(("", &types.api_version));
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk).await.map_err(failed)?;
    let api: Api<DynamicObject> = match capabilities.scope {
        kube::discovery::Scope::Namespaced => {
            let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object)).await.map_err(failed)?;
    Ok(())
}

/// The objects of a manifest: every YAML document (JSON is YAML too), the items of a `List` in its place.
fn documents(content: &str) -> Result<Vec<DynamicObject>, ManifestError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(content).enumerate() {
        let parse = |message: String| ManifestError::Parse { index, message };
        let value =
            <serde_json::Value as serde::Deserialize>::deserialize(document).map_err(|e| parse(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let list = value.get("kind").and_then(|k| k.as_str()).is_some_and(|k| k.ends_with("List"));
        let items = match value.get("items").and_then(|i| i.as_array()).filter(|_| list) {
            Some(items) => items.clone(),
            None => vec![value],
        };
        for item in items {
            let object: DynamicObject = serde_json::from_value(item).map_err(|e| parse(e.to_string()))?;
            if object.types.is_none() {
                return Err(parse("apiVersion and kind are required".into()));
            }
            if object.metadata.name.as_deref().unwrap_or("").is_empty() {
                return Err(parse("metadata.name is required".into()));
            }
            objects.push(object);
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_lists_expanded_and_empty_ones_skipped() {
        let content = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\n---\n\
            apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: demo}}\n\
            - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
        let names: Vec<String> =
            documents(content).expect("parsed").into_iter().map(|o| o.metadata.name.expect("name")).collect();
        assert_eq!(names, ["demo", "a", "b"]);
        let json = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, "data": {"k": "v"}}"#;
        assert_eq!(documents(json).expect("parsed").len(), 1);
    }

    #[test]
    fn a_document_without_kind_or_name_is_refused_naming_it() {
        let error = documents("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nmetadata: {name: b}\n")
            .expect_err("no kind");
        assert_eq!(error.to_string(), "document 1: apiVersion and kind are required");
        let error = documents("apiVersion: v1\nkind: ConfigMap\n").expect_err("no name");
        assert_eq!(error.to_string(), "document 0: metadata.name is required");
        assert!(documents("a: [").is_err());
    }

    #[test]
    fn skipped_and_other_files_are_not_manifests() {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in ["b.yaml", "a.json", "c.yml", "d.yaml", "d.yaml.skip", "e.txt"] {
            std::fs::write(dir.path().join(file), "").expect("write");
        }
        let names: Vec<String> = manifest_files(dir.path())
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json", "b.yaml", "c.yml"]);
    }
}
