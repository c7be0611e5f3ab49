//! Garbage collector (upstream's garbagecollector): a metadata watch on every resource but Events builds
//! the ownership graph; once all have synced it deletes objects whose owners are all gone (background
//! propagation), deletes the dependents of an owner deleted in the foreground and removes its
//! `foregroundDeletion` finalizer when no dependent blocks it any more, and for an owner deleted with
//! orphan propagation strips its references from the dependents before removing the `orphan` finalizer.
//! Absence of an owner the graph has not seen is confirmed with a GET of the owner, so a watch that is
//! merely behind never gets anything deleted.

mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use super::{api_resource, list_or_null};
use crate::core::registry::{self, ResourceInfo};
use graph::{Graph, Item};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
/// Deletes and patches in flight at once.
const CONCURRENCY: usize = 32;
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One piece of work on the API.
enum Work {
    /// Delete `item` (or drop its references) if its owners are gone or deleting in the foreground.
    Collect { item: Item, owners: Vec<(OwnerReference, Option<Item>)>, has_dependents: bool },
    /// Strip the owner's references from its dependents, then remove its `orphan` finalizer.
    Orphan { owner: Item, dependents: Vec<Item> },
    /// Remove the owner's `foregroundDeletion` finalizer: nothing blocks it any more.
    FinishForeground { owner: Item },
}

impl Work {
    fn key(&self) -> (u8, String) {
        match self {
            Work::Collect { item, .. } => (0, item.uid.clone()),
            Work::Orphan { owner, .. } => (1, owner.uid.clone()),
            Work::FinishForeground { owner } => (2, owner.uid.clone()),
        }
    }
}

struct Collector {
    client: Client,
    graph: Graph,
    /// Resources whose watch has listed once.
    synced: HashSet<usize>,
    watched: usize,
    relisted: HashMap<usize, HashSet<String>>,
    in_flight: HashSet<(u8, String)>,
    /// Work finished (true when it succeeded), back from its task.
    done: mpsc::UnboundedSender<((u8, String), bool)>,
    retry: mpsc::UnboundedSender<String>,
    /// Owner uids a GET found gone (uids are never reused).
    absent: Arc<Mutex<HashSet<String>>>,
    permits: Arc<Semaphore>,
}

fn watched_resources() -> impl Iterator<Item = &'static ResourceInfo> {
    registry::RESOURCES.iter().filter(|r| r.kind != "Event" && r.is_stored())
}

fn api(client: &Client, res: &ResourceInfo, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace.filter(|_| res.namespaced) {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &api_resource(res)),
        None => Api::all_with(client.clone(), &api_resource(res)),
    }
}

/// Registry entries are statics: their address identifies them.
fn key_of(res: &'static ResourceInfo) -> usize {
    std::ptr::from_ref(res) as usize
}

/// Runs until the client's server goes away.
pub async fn run(client: Client) {
    let streams = watched_resources().map(|res| {
        let metadata: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &api_resource(res));
        watcher(metadata, watcher::Config::default()).default_backoff().map(move |event| (res, event)).boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let (done, mut finished) = mpsc::unbounded_channel();
    let (retry, mut retries) = mpsc::unbounded_channel();
    let mut collector = Collector {
        client,
        graph: Graph::default(),
        synced: HashSet::new(),
        watched: watched_resources().count(),
        relisted: HashMap::new(),
        in_flight: HashSet::new(),
        done,
        retry,
        absent: Arc::default(),
        permits: Arc::new(Semaphore::new(CONCURRENCY)),
    };
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some((res, Ok(event))) => collector.on_event(res, event),
                Some((_, Err(error))) => tracing::debug!(%error, "garbage collector watch"),
                None => return,
            },
            Some((key, ok)) = finished.recv() => {
                collector.in_flight.remove(&key);
                if !ok {
                    let retry = collector.retry.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = retry.send(key.1);
                    });
                }
            }
            Some(uid) = retries.recv() => collector.reconsider(&uid),
        }
    }
}

fn item_of(res: &'static ResourceInfo, object: &PartialObjectMeta<DynamicObject>) -> Item {
    let meta = &object.metadata;
    Item {
        resource: res,
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone(),
        owners: meta.owner_references.clone().unwrap_or_default(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
    }
}

impl Collector {
    fn is_synced(&self) -> bool {
        self.synced.len() == self.watched
    }

    fn on_event(&mut self, res: &'static ResourceInfo, event: watcher::Event<PartialObjectMeta<DynamicObject>>) {
        match event {
            watcher::Event::Init => {
                self.relisted.insert(key_of(res), HashSet::new());
            }
            watcher::Event::InitApply(object) => {
                let item = item_of(res, &object);
                self.relisted.entry(key_of(res)).or_default().insert(item.uid.clone());
                self.graph.upsert(item);
            }
            watcher::Event::InitDone => {
                let keep = self.relisted.remove(&key_of(res)).unwrap_or_default();
                let gone = self.graph.retain_resource(res, &keep);
                let was_synced = self.is_synced();
                self.synced.insert(key_of(res));
                if self.is_synced() && !was_synced {
                    let all: Vec<String> = self.graph.items().map(|i| i.uid.clone()).collect();
                    all.iter().for_each(|uid| self.reconsider(uid));
                } else if was_synced {
                    gone.iter().for_each(|item| self.after_delete(item));
                }
            }
            watcher::Event::Apply(object) => {
                let item = item_of(res, &object);
                let uid = item.uid.clone();
                self.graph.upsert(item);
                if self.is_synced() {
                    self.reconsider(&uid);
                }
            }
            watcher::Event::Delete(object) => {
                let item = item_of(res, &object);
                if let Some(removed) = self.graph.remove(&item.uid) {
                    if self.is_synced() {
                        self.after_delete(&removed);
                    }
                }
            }
        }
    }

    /// An object went away: its dependents may be orphaned now, and an owner waiting on it may be done.
    fn after_delete(&mut self, gone: &Item) {
        let dependents: Vec<String> = self.graph.dependents_of(&gone.uid).iter().map(|d| d.uid.clone()).collect();
        dependents.iter().for_each(|uid| self.collect(uid));
        for owner in &gone.owners {
            self.check_foreground(&owner.uid);
        }
    }

    /// Everything an item's current state may call for.
    fn reconsider(&mut self, uid: &str) {
        let Some(item) = self.graph.get(uid).cloned() else {
            return;
        };
        if item.deleting && item.has_finalizer(ORPHAN) {
            let dependents = self.graph.dependents_of(uid).into_iter().cloned().collect();
            self.spawn(Work::Orphan { owner: item.clone(), dependents });
        }
        if item.deleting && item.has_finalizer(FOREGROUND) {
            let dependents: Vec<String> = self.graph.dependents_of(uid).iter().map(|d| d.uid.clone()).collect();
            dependents.iter().for_each(|d| self.collect(d));
            self.check_foreground(uid);
        }
        let needs_collecting = item.owners.iter().any(|o| match self.graph.get(&o.uid) {
            None => true,
            Some(owner) => owner.deleting && owner.has_finalizer(FOREGROUND),
        });
        if needs_collecting {
            self.collect(uid);
        }
    }

    fn check_foreground(&mut self, owner: &str) {
        let Some(item) = self.graph.get(owner) else {
            return;
        };
        if item.deleting && item.has_finalizer(FOREGROUND) && !self.graph.has_blocking_dependents(owner) {
            self.spawn(Work::FinishForeground { owner: item.clone() });
        }
    }

    fn collect(&mut self, uid: &str) {
        let Some(item) = self.graph.get(uid).cloned() else {
            return;
        };
        let owners = item.owners.iter().map(|o| (o.clone(), self.graph.get(&o.uid).cloned())).collect();
        let has_dependents = !self.graph.dependents_of(uid).is_empty();
        self.spawn(Work::Collect { item, owners, has_dependents });
    }

    fn spawn(&mut self, work: Work) {
        let key = work.key();
        if !self.in_flight.insert(key.clone()) {
            return;
        }
        let (client, done, absent, permits) =
            (self.client.clone(), self.done.clone(), self.absent.clone(), self.permits.clone());
        tokio::spawn(async move {
            let _permit = permits.acquire().await;
            let result = match work {
                Work::Collect { item, owners, has_dependents } => {
                    collect(&client, &absent, &item, owners, has_dependents).await
                }
                Work::Orphan { owner, dependents } => orphan(&client, &owner, &dependents).await,
                Work::FinishForeground { owner } => remove_finalizer(&client, &owner, FOREGROUND).await,
            };
            if let Err(error) = &result {
                tracing::debug!(%error, "garbage collection step failed; retrying");
            }
            let _ = done.send((key, result.is_ok()));
        });
    }
}

/// How an owner stands, as upstream classifies it.
#[derive(PartialEq)]
enum Standing {
    Solid,
    Dangling,
    WaitingForDependents,
}

async fn standing(
    client: &Client,
    absent: &Mutex<HashSet<String>>,
    namespace: Option<&str>,
    owner: &OwnerReference,
    seen: Option<Item>,
) -> kube::Result<Standing> {
    let waiting = |deleting: bool, finalizers: &[String]| deleting && finalizers.iter().any(|f| f == FOREGROUND);
    if let Some(item) = seen {
        return Ok(if waiting(item.deleting, &item.finalizers) {
            Standing::WaitingForDependents
        } else {
            Standing::Solid
        });
    }
    if absent.lock().unwrap_or_else(|e| e.into_inner()).contains(&owner.uid) {
        return Ok(Standing::Dangling);
    }
    let (group, version) = owner.api_version.split_once('/').unwrap_or(("", owner.api_version.as_str()));
    let Some(res) =
        registry::RESOURCES.iter().find(|r| r.group == group && r.version == version && r.kind == owner.kind)
    else {
        // An owner of a kind this server does not serve cannot be judged: leave the dependent alone.
        return Ok(Standing::Solid);
    };
    let found = match api(client, res, namespace).get_metadata_opt(&owner.name).await? {
        Some(found) if found.metadata.uid.as_deref() == Some(owner.uid.as_str()) => found,
        _ => {
            let mut absent = absent.lock().unwrap_or_else(|e| e.into_inner());
            if absent.len() > 100_000 {
                absent.clear();
            }
            absent.insert(owner.uid.clone());
            return Ok(Standing::Dangling);
        }
    };
    let finalizers = found.metadata.finalizers.unwrap_or_default();
    Ok(if waiting(found.metadata.deletion_timestamp.is_some(), &finalizers) {
        Standing::WaitingForDependents
    } else {
        Standing::Solid
    })
}

/// Upstream's attemptToDeleteItem: keep the item while a solid owner remains (dropping references to the
/// others), delete it in the foreground when it blocks an owner's foreground deletion and has dependents
/// of its own, and otherwise delete it as its own finalizers ask.
async fn collect(
    client: &Client,
    absent: &Mutex<HashSet<String>>,
    item: &Item,
    owners: Vec<(OwnerReference, Option<Item>)>,
    has_dependents: bool,
) -> kube::Result<()> {
    if item.deleting {
        return Ok(());
    }
    let mut standings = Vec::new();
    for (owner, seen) in owners {
        let standing = standing(client, absent, item.namespace.as_deref(), &owner, seen).await?;
        standings.push((owner, standing));
    }
    let api = api(client, item.resource, item.namespace.as_deref());
    if standings.iter().any(|(_, s)| *s == Standing::Solid) {
        if standings.iter().all(|(_, s)| *s == Standing::Solid) {
            return Ok(());
        }
        let keep: Vec<&OwnerReference> =
            standings.iter().filter(|(_, s)| *s == Standing::Solid).map(|(o, _)| o).collect();
        let patch = json!({"metadata": {"ownerReferences": list_or_null(&keep), "uid": item.uid, "resourceVersion": item.resource_version}});
        return ignore_missing(api.patch_metadata(&item.name, &PatchParams::default(), &Patch::Merge(patch)).await);
    }
    let waiting = standings.iter().any(|(_, s)| *s == Standing::WaitingForDependents);
    let policy = if waiting && has_dependents {
        "Foreground"
    } else if item.has_finalizer(ORPHAN) {
        "Orphan"
    } else if item.has_finalizer(FOREGROUND) {
        "Foreground"
    } else {
        "Background"
    };
    let params = DeleteParams {
        propagation_policy: Some(match policy {
            "Foreground" => kube::api::PropagationPolicy::Foreground,
            "Orphan" => kube::api::PropagationPolicy::Orphan,
            _ => kube::api::PropagationPolicy::Background,
        }),
        preconditions: Some(Preconditions { uid: Some(item.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    ignore_missing(api.delete(&item.name, &params).await)
}

/// Strips `owner` from every dependent's ownerReferences, then removes its `orphan` finalizer.
async fn orphan(client: &Client, owner: &Item, dependents: &[Item]) -> kube::Result<()> {
    for dependent in dependents {
        let keep: Vec<&OwnerReference> = dependent.owners.iter().filter(|o| o.uid != owner.uid).collect();
        let patch = json!({"metadata": {"ownerReferences": list_or_null(&keep), "uid": dependent.uid, "resourceVersion": dependent.resource_version}});
        let api = api(client, dependent.resource, dependent.namespace.as_deref());
        ignore_missing(api.patch_metadata(&dependent.name, &PatchParams::default(), &Patch::Merge(patch)).await)?;
    }
    remove_finalizer(client, owner, ORPHAN).await
}

async fn remove_finalizer(client: &Client, owner: &Item, finalizer: &str) -> kube::Result<()> {
    let keep: Vec<&String> = owner.finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {"finalizers": list_or_null(&keep), "uid": owner.uid, "resourceVersion": owner.resource_version}});
    let api = api(client, owner.resource, owner.namespace.as_deref());
    ignore_missing(api.patch_metadata(&owner.name, &PatchParams::default(), &Patch::Merge(patch)).await)
}

fn ignore_missing<T>(result: kube::Result<T>) -> kube::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
