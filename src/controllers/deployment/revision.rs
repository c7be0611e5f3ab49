//! A Deployment's ReplicaSets as revisions: the pod-template-hash that names and selects each, which of
//! them is the "new" one (same template, hash aside), revision numbers and their history, the
//! annotations copied from the Deployment, and which old ReplicaSets revisionHistoryLimit lets go.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;

pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations that are not copied to its ReplicaSets (upstream's skip list).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Characters a hash is written in (upstream's SafeEncodeString alphabet: no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The template's hash with the collision count folded in, written as upstream writes it (fnv-1a 32 of
/// the template, its decimal digits mapped onto the safe alphabet).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        feed(&(count as u32).to_le_bytes());
    }
    hash.to_string().bytes().map(|d| SAFE_ALPHABET[usize::from(d) % SAFE_ALPHABET.len()] as char).collect()
}

/// The template with the pod-template-hash label removed (and an emptied label map dropped).
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
    }
    template
}

/// Whether two templates are the same apart from the pod-template-hash label (upstream's EqualIgnoreHash).
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

pub fn template_of(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default()
}

pub fn deployment_template(d: &Deployment) -> PodTemplateSpec {
    d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

/// A ReplicaSet's revision number (0 when it has none).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// The new ReplicaSet (the oldest one whose template matches the Deployment's) and the others.
pub fn split_new_and_old<'a>(d: &Deployment, owned: &'a [ReplicaSet]) -> (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let template = deployment_template(d);
    let mut matching: Vec<&ReplicaSet> = owned.iter().filter(|rs| same_template(&template_of(rs), &template)).collect();
    matching.sort_by_key(|rs| (rs.creation_timestamp().map(|t| t.0), rs.name_any()));
    let new = matching.first().copied();
    let old = owned.iter().filter(|rs| new.is_none_or(|n| n.uid() != rs.uid())).collect();
    (new, old)
}

/// The annotations the new ReplicaSet should carry: the Deployment's (minus the skip list), its revision
/// (with the revisions it had before in the history), and the replica counts it was sized for.
pub fn new_rs_annotations(
    d: &Deployment,
    current: Option<&ReplicaSet>,
    new_revision: i64,
    max_surge: i32,
) -> BTreeMap<String, String> {
    let mut annotations: BTreeMap<String, String> = current.map(|rs| rs.annotations().clone()).unwrap_or_default();
    for (k, v) in d.annotations() {
        if !NOT_COPIED.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    let old_revision = current.map(revision).unwrap_or(0);
    if old_revision < new_revision {
        if old_revision > 0 {
            let mut history: Vec<String> = annotations
                .get(REVISION_HISTORY)
                .map(|h| h.split(',').filter(|r| !r.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            history.push(old_revision.to_string());
            annotations.insert(REVISION_HISTORY.into(), history.join(","));
        }
        annotations.insert(REVISION.into(), new_revision.to_string());
    }
    let replicas = replicas(d);
    annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string());
    annotations.insert(MAX_REPLICAS.into(), (replicas + max_surge).to_string());
    annotations
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Old ReplicaSets past revisionHistoryLimit that may be deleted: scaled to zero with no pods left,
/// oldest revisions first.
pub fn beyond_history_limit<'a>(d: &Deployment, old: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let limit = d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0) as usize;
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0)
        .filter(|rs| rs.status.as_ref().is_none_or(|s| s.replicas == 0))
        .collect();
    if idle.len() <= limit {
        return vec![];
    }
    idle.sort_by_key(|rs| (revision(rs), rs.creation_timestamp().map(|t| t.0)));
    idle.truncate(idle.len() - limit);
    idle
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str, hash: Option<&str>) -> PodTemplateSpec {
        let mut labels = json!({"app": "web"});
        if let Some(h) = hash {
            labels[TEMPLATE_HASH_LABEL] = json!(h);
        }
        serde_json::from_value(
            json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}}),
        )
        .unwrap()
    }

    fn rs(name: &str, rev: i64, replicas: i32, created: &str) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": name, "uid": name, "creationTimestamp": created,
            "annotations": {REVISION: rev.to_string()}},
            "spec": {"replicas": replicas, "selector": {}, "template": template("nginx", Some(name))},
            "status": {"replicas": replicas}}))
        .unwrap()
    }

    #[test]
    fn hashes_are_stable_safe_and_change_with_template_and_collisions() {
        let t = template("nginx", None);
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert!(h.len() >= 8 && h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
        assert_ne!(h, template_hash(&template("nginx:2", None), None));
        assert_ne!(h, template_hash(&t, Some(1)));
    }

    #[test]
    fn the_hash_label_does_not_make_a_template_different() {
        assert!(same_template(&template("nginx", None), &template("nginx", Some("abc"))));
        assert!(!same_template(&template("nginx", None), &template("httpd", Some("abc"))));
    }

    #[test]
    fn a_revived_revision_records_its_history() {
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web", "annotations": {
            "kubernetes.io/change-cause": "undo", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 3, "selector": {}, "template": {}}}))
        .unwrap();
        let current = rs("web-a", 1, 0, "2024-01-01T00:00:00Z");
        let annotations = new_rs_annotations(&d, Some(&current), 3, 1);
        assert_eq!(annotations.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(annotations.get(REVISION_HISTORY).map(String::as_str), Some("1"));
        assert_eq!(annotations.get("kubernetes.io/change-cause").map(String::as_str), Some("undo"));
        assert_eq!(annotations.get(MAX_REPLICAS).map(String::as_str), Some("4"));
        assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    }

    #[test]
    fn history_keeps_the_newest_idle_revisions() {
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"revisionHistoryLimit": 1, "selector": {}, "template": {}}}))
        .unwrap();
        let (a, b, c) = (
            rs("a", 1, 0, "2024-01-01T00:00:00Z"),
            rs("b", 2, 0, "2024-01-02T00:00:00Z"),
            rs("c", 3, 2, "2024-01-03T00:00:00Z"),
        );
        let doomed: Vec<String> = beyond_history_limit(&d, &[&a, &b, &c]).iter().map(|rs| rs.name_any()).collect();
        assert_eq!(doomed, ["a"]);
    }
}
