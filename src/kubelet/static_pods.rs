//! Static pods: the Pod manifests (`*.yaml`, `*.yml`, `*.json`) in `<data-dir>/agent/pod-manifests/`,
//! run by the kubelet itself, without the API, as upstream's file source. Each is named
//! `<name>-<node>`, bound to the node, and given a uid from a hash of its manifest (so a changed file is
//! a new pod); the API shows it as a mirror pod (annotation `kubernetes.io/config.mirror`, owned by the
//! Node), which the kubelet recreates when deleted and removes with the manifest.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

/// How often the manifest directory is read (upstream's file check frequency).
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(20);
pub const MIRROR: &str = "kubernetes.io/config.mirror";
const SOURCE: &str = "kubernetes.io/config.source";
const HASH: &str = "kubernetes.io/config.hash";

/// Whether `pod` came from a manifest here (it has no status of its own).
pub fn is_static(pod: &Pod) -> bool {
    pod.annotations().get(SOURCE).is_some_and(|s| s == "file") && !is_mirror(pod)
}

/// Whether `pod` is a mirror pod (the API's view of a static pod, never run from the API).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.annotations().contains_key(MIRROR)
}

/// The static pods of `dir` for node `node`; a manifest that is not a Pod is skipped with a warning.
pub fn read(dir: &Path, node: &str) -> Vec<Pod> {
    let mut pods = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let manifest = path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if !manifest {
            continue;
        }
        match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|text| static_pod(&text, node)) {
            Ok(pod) => pods.push(pod),
            Err(error) => tracing::warn!(%error, manifest = %path.display(), "skipping a static pod manifest"),
        }
    }
    pods
}

/// One manifest as the static pod the kubelet runs.
fn static_pod(text: &str, node: &str) -> Result<Pod, String> {
    let mut pod: Pod = serde_yaml::from_str(text).map_err(|e| format!("not a Pod: {e}"))?;
    let name = pod.metadata.name.clone().filter(|n| !n.is_empty()).ok_or("the Pod has no name")?;
    let digest = Sha256::digest(format!("{node}\n{text}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let uid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata.namespace = Some(pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()));
    pod.metadata.uid = Some(uid.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(SOURCE.into(), "file".into());
    annotations.insert(HASH.into(), uid);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    Ok(pod)
}

/// Makes the API's mirror pods match `pods`: creates the missing ones (owned by the Node), replaces
/// those of an older manifest or being deleted, removes those whose manifest is gone.
pub async fn sync_mirrors(client: &kube::Client, node: &str, pods: &[Pod]) -> kube::Result<()> {
    let all: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={node}");
    let existing = all.list(&ListParams::default().fields(&selector)).await?.items;
    let existing: Vec<Pod> = existing.into_iter().filter(is_mirror).collect();
    let current = |mirror: &Pod| {
        // One being deleted (kubectl delete, an eviction) is replaced: the static pod itself goes on.
        mirror.metadata.deletion_timestamp.is_none()
            && pods
                .iter()
                .any(|p| p.name_any() == mirror.name_any() && p.uid().as_ref() == mirror.annotations().get(MIRROR))
    };
    for mirror in existing.iter().filter(|m| !current(m)) {
        let api: Api<Pod> = Api::namespaced(client.clone(), &mirror.namespace().unwrap_or_default());
        let preconditions = kube::api::Preconditions { uid: mirror.uid(), resource_version: None };
        let params =
            DeleteParams { grace_period_seconds: Some(0), preconditions: Some(preconditions), ..Default::default() };
        if let Err(error) = api.delete(&mirror.name_any(), &params).await {
            tracing::debug!(%error, mirror = mirror.name_any(), "cannot remove a stale mirror pod yet");
        }
    }
    let owner = Api::<Node>::all(client.clone()).get_opt(node).await?.and_then(|n| n.controller_owner_ref(&()));
    for pod in pods {
        if existing.iter().any(|m| m.name_any() == pod.name_any() && current(m)) {
            continue;
        }
        let mut mirror = pod.clone();
        mirror.metadata.uid = None;
        mirror
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(MIRROR.into(), pod.uid().unwrap_or_default());
        mirror.metadata.owner_references = owner.clone().map(|o| vec![o]);
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        // A failure (a namesake in the API, a missing namespace) is this pod's alone: the others go on.
        if let Err(error) = api.create(&PostParams::default(), &mirror).await {
            tracing::warn!(%error, pod = pod.name_any(), "cannot create the mirror pod of a static pod");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_becomes_a_pod_of_the_node_with_a_uid_from_its_content() {
        let text =
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: app, image: busybox}]\n";
        let pod = static_pod(text, "edge-1").unwrap();
        assert_eq!((pod.name_any(), pod.namespace().unwrap()), ("web-edge-1".to_string(), "default".to_string()));
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("edge-1"));
        assert_eq!(pod.annotations()[SOURCE], "file");
        assert_eq!(pod.uid(), static_pod(text, "edge-1").unwrap().uid(), "the same manifest, the same pod");
        assert_ne!(pod.uid(), static_pod(&text.replace("busybox", "nginx"), "edge-1").unwrap().uid());
        assert!(static_pod("kind: Pod\nmetadata: {}\n", "n").unwrap_err().contains("no name"));
    }
}
