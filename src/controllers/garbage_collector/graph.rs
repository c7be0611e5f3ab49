//! The ownership graph the garbage collector keeps from its metadata watches: every object by uid with
//! its owners, and for every owner uid the objects that name it.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::core::registry::ResourceInfo;

/// What the collector knows of one object.
#[derive(Debug, Clone)]
pub struct Item {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Item {
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

#[derive(Default)]
pub struct Graph {
    items: HashMap<String, Item>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Adds or replaces an item; returns the previous state.
    pub fn upsert(&mut self, item: Item) -> Option<Item> {
        let previous = self.remove(&item.uid);
        for owner in &item.owners {
            self.dependents.entry(owner.uid.clone()).or_default().insert(item.uid.clone());
        }
        self.items.insert(item.uid.clone(), item);
        previous
    }

    pub fn remove(&mut self, uid: &str) -> Option<Item> {
        let item = self.items.remove(uid)?;
        for owner in &item.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
        Some(item)
    }

    pub fn get(&self, uid: &str) -> Option<&Item> {
        self.items.get(uid)
    }

    /// The items that name `owner` among their owners.
    pub fn dependents_of(&self, owner: &str) -> Vec<&Item> {
        let uids = self.dependents.get(owner).into_iter().flatten();
        uids.filter_map(|uid| self.items.get(uid)).collect()
    }

    /// Whether any dependent of `owner` still blocks its foreground deletion.
    pub fn has_blocking_dependents(&self, owner: &str) -> bool {
        self.dependents_of(owner)
            .iter()
            .any(|d| d.owners.iter().any(|o| o.uid == owner && o.block_owner_deletion == Some(true)))
    }

    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    /// Forgets the items of `resource` not in `keep` (after its watch relisted); returns them.
    pub fn retain_resource(&mut self, resource: &ResourceInfo, keep: &HashSet<String>) -> Vec<Item> {
        let gone: Vec<String> = self
            .items
            .values()
            .filter(|i| std::ptr::eq(i.resource, resource) && !keep.contains(&i.uid))
            .map(|i| i.uid.clone())
            .collect();
        gone.iter().filter_map(|uid| self.remove(uid)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry;

    fn item(uid: &str, owners: &[(&str, bool)]) -> Item {
        Item {
            resource: registry::find("", "v1", "pods").unwrap(),
            namespace: Some("ns".into()),
            name: uid.into(),
            uid: uid.into(),
            resource_version: None,
            owners: owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    uid: o.to_string(),
                    block_owner_deletion: Some(*block),
                    ..Default::default()
                })
                .collect(),
            finalizers: vec![],
            deleting: false,
        }
    }

    #[test]
    fn dependents_follow_owner_references_as_they_change() {
        let mut g = Graph::default();
        g.upsert(item("a", &[("rs", true)]));
        g.upsert(item("b", &[("rs", false)]));
        assert_eq!(g.dependents_of("rs").len(), 2);
        assert!(g.has_blocking_dependents("rs"));
        g.upsert(item("a", &[("other", false)]));
        assert!(!g.has_blocking_dependents("rs"));
        g.remove("b");
        assert!(g.dependents_of("rs").is_empty());
        assert_eq!(g.dependents_of("other").len(), 1);
    }
}
