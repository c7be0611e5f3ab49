//! How workload controllers create and delete their pods (upstream's PodControl and expectations):
//! creates go in slow-start batches of 1, 2, 4, … so a failing template fails once rather than N times,
//! and every sync records what it created or deleted, holding the owner's next sync back until the pod
//! cache shows those changes, so a lagging cache never makes a controller act twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

/// Expectations not met by then are given up (the cache missed an event or a write failed silently).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Pods a sync created (by name) or deleted (by name and uid) that the cache has yet to show.
struct Expected {
    created: Vec<String>,
    deleted: Vec<(String, String)>,
    deadline: Instant,
}

/// The outstanding expectations of every owner of kind `K`.
pub struct Expectations<K: Resource<DynamicType = ()>> {
    owners: Mutex<HashMap<ObjectRef<K>, Expected>>,
}

impl<K: Resource<DynamicType = ()>> Default for Expectations<K> {
    fn default() -> Self {
        Expectations { owners: Mutex::default() }
    }
}

impl<K: Resource<DynamicType = ()>> Expectations<K> {
    /// Records what a sync of `owner` just created and deleted.
    pub fn expect(&self, owner: ObjectRef<K>, created: Vec<String>, deleted: Vec<(String, String)>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let expected = Expected { created, deleted, deadline: Instant::now() + EXPECTATION_TIMEOUT };
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).insert(owner, expected);
    }

    /// Whether `pods` shows every pod the last sync of `owner` created, and none it deleted.
    pub fn met(&self, owner: &ObjectRef<K>, pods: &Store<Pod>) -> bool {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let Some(expected) = owners.get(owner) else {
            return true;
        };
        let ns = owner.namespace.clone().unwrap_or_default();
        let cached = |name: &str| pods.get(&ObjectRef::new(name).within(&ns));
        let seen = |name: &String| cached(name).is_some();
        let gone = |(name, uid): &(String, String)| {
            cached(name).is_none_or(|p| p.uid().as_ref() != Some(uid) || p.metadata.deletion_timestamp.is_some())
        };
        let met = expected.created.iter().all(seen) && expected.deleted.iter().all(gone);
        if met || Instant::now() > expected.deadline {
            owners.remove(owner);
            return true;
        }
        false
    }
}

/// Creates `pods` in batches of 1, 2, 4, …; returns the names created and the first error.
pub async fn create(api: &Api<Pod>, pods: Vec<Pod>) -> (Vec<String>, kube::Result<()>) {
    let params = PostParams::default();
    let mut created = Vec::new();
    let mut batch = 1;
    let mut rest = pods.as_slice();
    while !rest.is_empty() {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        let results = futures::future::join_all(now.iter().map(|pod| api.create(&params, pod))).await;
        for result in results {
            match result {
                Ok(pod) => created.push(pod.name_any()),
                Err(e) => return (created, Err(e)),
            }
        }
        rest = later;
        batch *= 2;
    }
    (created, Ok(()))
}

/// Deletes `pods`; returns the names and uids deleted and the first error.
pub async fn delete(api: &Api<Pod>, pods: &[&Pod]) -> (Vec<(String, String)>, kube::Result<()>) {
    let params = DeleteParams::default();
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    let results = futures::future::join_all(names.iter().map(|name| api.delete(name, &params))).await;
    let mut deleted = Vec::new();
    for ((pod, name), result) in pods.iter().zip(names).zip(results) {
        match result {
            Ok(_) => deleted.extend(pod.uid().map(|uid| (name, uid))),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return (deleted, Err(e)),
        }
    }
    (deleted, Ok(()))
}
