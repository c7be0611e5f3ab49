//! Template history of DaemonSets and StatefulSets as ControllerRevisions, as upstream keeps it: one
//! revision `<owner>-<hash>` per distinct template, its `data` the strategic merge patch that restores
//! the template (`{"spec": {"template": {…, "$patch": "replace"}}}`, what `kubectl rollout undo`
//! applies), numbered in order of use — going back to an old template renumbers its revision as the
//! newest — and pruned to `revisionHistoryLimit`, never removing a revision pods still run.

use std::collections::BTreeSet;

use crate::controllers::claim;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

/// The label naming a pod's (and a revision's) template revision.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The name of the revision of `owner` with template hash `hash`.
pub fn revision_name(owner: &impl Resource, hash: &str) -> String {
    format!("{}-{hash}", owner.meta().name.as_deref().unwrap_or(""))
}

/// The template a revision restores.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// Records `template` (hashed `hash`) as the owner's newest revision and prunes the history beyond
/// `limit`, keeping every revision named in `in_use`. Returns the owner's revisions.
pub async fn record<K>(
    client: &Client,
    owner: &K,
    template: &PodTemplateSpec,
    hash: &str,
    limit: i32,
    in_use: &BTreeSet<String>,
) -> kube::Result<Vec<ControllerRevision>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), owner.meta().namespace.as_deref().unwrap_or(""));
    let uid = owner.meta().uid.clone();
    let mut revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| super::claim::controller_of(r).is_some_and(|o| Some(&o.uid) == uid.as_ref()))
        .collect();
    let newest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let name = revision_name(owner, hash);
    match revisions.iter_mut().find(|r| r.name_any() == name) {
        Some(existing) if existing.revision < newest => {
            let patch = Patch::Merge(json!({"revision": newest + 1}));
            *existing = api.patch(&name, &PatchParams::default(), &patch).await?;
        }
        Some(_) => {}
        None => {
            let mut data = serde_json::to_value(template).map_err(kube::Error::SerdeError)?;
            data["$patch"] = json!("replace");
            let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(REVISION_LABEL.into(), hash.into());
            let revision = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: owner.meta().namespace.clone(),
                    labels: Some(labels),
                    owner_references: claim::controller_ref(owner).map(|o| vec![o]),
                    ..Default::default()
                },
                data: Some(RawExtension(json!({"spec": {"template": data}}))),
                revision: newest + 1,
            };
            match api.create(&PostParams::default(), &revision).await {
                Ok(created) => revisions.push(created),
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    revisions.sort_by_key(|r| r.revision);
    let prunable: Vec<String> = revisions
        .iter()
        .filter(|r| r.name_any() != name && !in_use.contains(&r.name_any()))
        .map(ResourceExt::name_any)
        .collect();
    let surplus = prunable.len().saturating_sub(limit.max(0) as usize);
    for old in &prunable[..surplus] {
        match api.delete(old, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    revisions.retain(|r| !prunable[..surplus].contains(&r.name_any()));
    Ok(revisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_restores_its_template() {
        let template: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "i:1"}]}}))
        .expect("template");
        let mut data = serde_json::to_value(&template).expect("json");
        data["$patch"] = json!("replace");
        let revision = ControllerRevision {
            metadata: ObjectMeta::default(),
            data: Some(RawExtension(json!({"spec": {"template": data}}))),
            revision: 1,
        };
        assert_eq!(template_of(&revision), Some(template));
    }
}
