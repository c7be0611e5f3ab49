//! Ownership by selector, as upstream's ControllerRefManager: an owner claims the objects of its
//! namespace that it controls and its selector matches, adopts matching objects nobody controls, and
//! releases the ones it controls that stopped matching. Every change is a patch guarded by the object's
//! uid and resourceVersion, so a stale cache makes the sync fail and run again rather than act twice.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The selector, unless it is empty: an empty selector would select everything, and validation refuses
/// it, and so do we.
pub fn selector_of(selector: &LabelSelector) -> Option<Selector> {
    if selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
    {
        return None;
    }
    Selector::try_from(selector.clone()).ok()
}

/// The reference an owner puts on what it creates or adopts, as upstream's NewControllerRef: marked as
/// controller and blocking the owner's foreground deletion until the object is gone.
pub fn controller_ref<O: Resource<DynamicType = ()>>(owner: &O) -> Option<OwnerReference> {
    Some(OwnerReference { block_owner_deletion: Some(true), ..owner.controller_owner_ref(&())? })
}

/// The owner reference marked as controller, if any.
pub fn controller_of(object: &impl Resource) -> Option<&OwnerReference> {
    object.owner_references().iter().find(|o| o.controller == Some(true))
}

/// The owners an object's change concerns: its controller if it is of `owner_kind`, or, for an object
/// nobody controls, every owner of its namespace whose selector matches it (a candidate for adoption).
pub fn interested<O, K>(
    owners: &Store<O>,
    object: &K,
    owner_kind: &str,
    selector: impl Fn(&O) -> Option<Selector>,
) -> Vec<ObjectRef<O>>
where
    O: Resource<DynamicType = ()> + Clone,
    K: Resource,
{
    let ns = object.meta().namespace.clone().unwrap_or_default();
    if let Some(controller) = controller_of(object) {
        return match controller.kind == owner_kind {
            true => vec![ObjectRef::new(&controller.name).within(&ns)],
            false => vec![],
        };
    }
    selecting(owners, object, selector)
}

/// The objects of `store` in `object`'s namespace whose selector matches it.
pub fn selecting<O, K>(store: &Store<O>, object: &K, selector: impl Fn(&O) -> Option<Selector>) -> Vec<ObjectRef<O>>
where
    O: Resource<DynamicType = ()> + Clone,
    K: Resource,
{
    let ns = object.meta().namespace.as_deref();
    store
        .state()
        .iter()
        .filter(|owner| owner.meta().namespace.as_deref() == ns)
        .filter(|owner| selector(owner.as_ref()).is_some_and(|s| s.matches(object.labels())))
        .map(|owner| ObjectRef::from_obj(owner.as_ref()))
        .collect()
}

/// The objects among `candidates` that `owner` controls once it has adopted and released by `selector`
/// (shared with the cache, not copied: a ReplicaSet may own thousands of pods).
/// `adoptable` says whether an orphan may be adopted (upstream adopts only active pods).
pub async fn claim<O, K>(
    owner: &O,
    selector: &Selector,
    candidates: impl Iterator<Item = Arc<K>>,
    api: &Api<K>,
    adoptable: impl Fn(&K) -> bool,
) -> kube::Result<Vec<Arc<K>>>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let (ns, uid) = (owner.meta().namespace.clone(), owner.meta().uid.clone());
    let mut owned = Vec::new();
    for object in candidates.filter(|o| o.meta().namespace == ns) {
        let matches = selector.matches(object.labels());
        match controller_of(object.as_ref()) {
            Some(controller) if Some(&controller.uid) == uid.as_ref() => {
                if matches {
                    owned.push(object);
                } else {
                    let rest = object.owner_references().iter().filter(|o| o.uid != controller.uid).cloned();
                    set_owners(api, object.as_ref(), rest).await?;
                }
            }
            None if matches && adoptable(&object) && owner.meta().deletion_timestamp.is_none() => {
                let Some(mine) = controller_ref(owner) else { continue };
                let owners = object.owner_references().iter().cloned().chain([mine]);
                let adopted = set_owners(api, object.as_ref(), owners);
                owned.extend(adopted.await?.map(Arc::new));
            }
            _ => {}
        }
    }
    Ok(owned)
}

/// Replaces an object's ownerReferences, guarded by its uid and resourceVersion. None when it is gone.
async fn set_owners<K>(
    api: &Api<K>,
    object: &K,
    owners: impl Iterator<Item = OwnerReference>,
) -> kube::Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let owners: Vec<OwnerReference> = owners.collect();
    let patch = json!({"metadata": {"ownerReferences": super::list_or_null(&owners), "uid": object.uid(), "resourceVersion": object.resource_version()}});
    match api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_selector_selects_nothing() {
        assert!(selector_of(&LabelSelector::default()).is_none());
        let app =
            LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() };
        assert!(selector_of(&app).is_some());
    }
}
