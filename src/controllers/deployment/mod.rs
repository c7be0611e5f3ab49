//! Deployment controller (upstream's deployment controller): claims the ReplicaSets its selector
//! matches, keeps one ReplicaSet per template revision (named and selected by pod-template-hash),
//! rolls from the old ones to the new one by RollingUpdate (within maxSurge and maxUnavailable) or
//! Recreate (old pods gone first), shares a mid-rollout scale among them in proportion, holds still
//! while paused, trims history to revisionHistoryLimit, and reports status and the Available and
//! Progressing conditions that `kubectl rollout` reads.

pub(crate) mod plan;
pub(crate) mod revision;
mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::claim;
use crate::events::{EventType, Recorder};
use plan::Rs;
use revision::{replicas, TEMPLATE_HASH_LABEL};

struct Context {
    client: Client,
    replica_sets: Store<ReplicaSet>,
    recorder: Arc<Recorder>,
}

/// Runs until the client's server goes away.
pub async fn run(client: Client) {
    let (cache, writer) = reflector::store();
    let rs_events = watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let controller = Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default());
    let deployments = controller.store();
    let recorder = Recorder::new(client.clone(), "deployment-controller");
    let context = Arc::new(Context { client, replica_sets: cache, recorder });
    controller
        .watches_stream(rs_events, move |rs| claim::interested(&deployments, &rs, "Deployment", selector))
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn selector(d: &Deployment) -> Option<Selector> {
    claim::selector_of(&d.spec.as_ref()?.selector)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// (maxSurge, maxUnavailable) of the Deployment's strategy: zero surge and unavailability for Recreate.
fn fenceposts(d: &Deployment) -> (i32, i32) {
    if is_recreate(d) {
        return (0, 0);
    }
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let (surge, unavailable) = plan::fenceposts(
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    );
    (surge, if replicas(d) == 0 { 0 } else { unavailable })
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// The arithmetic's view of ReplicaSets, ranked oldest first.
fn views(sets: &[&ReplicaSet]) -> Vec<Rs> {
    let mut ranked: Vec<&ReplicaSet> = sets.to_vec();
    ranked.sort_by_key(|rs| (rs.creation_timestamp().map(|t| t.0), rs.name_any()));
    sets.iter()
        .map(|rs| Rs {
            name: rs.name_any(),
            replicas: spec_replicas(rs),
            available: rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0),
            age_rank: ranked.iter().position(|r| r.uid() == rs.uid()).unwrap_or(0),
            sized_for: rs.annotations().get(revision::MAX_REPLICAS).and_then(|v| v.parse().ok()),
        })
        .collect()
}

/// One sync's view: the Deployment, its new ReplicaSet (if any) and its old ones, as they are after
/// this sync's writes.
struct Sync<'a> {
    context: &'a Context,
    d: &'a Deployment,
    api: Api<ReplicaSet>,
    new: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
    /// A Progressing condition this sync found reason to set (new ReplicaSet created or found).
    progressing: Option<DeploymentCondition>,
}

async fn reconcile(d: Arc<Deployment>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let (Some(ns), Some(selector)) = (d.namespace(), selector(&d)) else {
        return Ok(Action::await_change());
    };
    let api: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &ns);
    let owned = claim::claim(d.as_ref(), &selector, context.replica_sets.state().into_iter(), &api, |_| true).await?;
    let owned: Vec<ReplicaSet> = owned.iter().map(|rs| rs.as_ref().clone()).collect();
    let mut sync = Sync { context: &context, d: &d, api, new: None, old: Vec::new(), progressing: None };
    if d.metadata.deletion_timestamp.is_some() {
        sync.split(owned);
        return sync.finish(false).await;
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused || is_scaling_event(&d, &owned) {
        sync.adopt_revisions(owned, false).await?;
        sync.scale().await?;
        return sync.finish(paused).await;
    }
    if is_recreate(&d) {
        sync.adopt_revisions(owned, false).await?;
        if sync.recreate().await? {
            return sync.finish(false).await.map(|_| Action::requeue(Duration::from_secs(1)));
        }
    } else {
        sync.adopt_revisions(owned, true).await?;
        sync.roll().await?;
    }
    sync.finish(true).await
}

/// A scale of the Deployment not yet passed on: an active ReplicaSet was sized for another count.
fn is_scaling_event(d: &Deployment, owned: &[ReplicaSet]) -> bool {
    owned.iter().filter(|rs| spec_replicas(rs) > 0).any(|rs| {
        let desired = rs.annotations().get(revision::DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok());
        desired.is_some_and(|n| n != replicas(d))
    })
}

impl Sync<'_> {
    fn split(&mut self, owned: Vec<ReplicaSet>) {
        let (new, old) = revision::split_new_and_old(self.d, &owned);
        self.new = new.cloned();
        self.old = old.into_iter().cloned().collect();
    }

    fn all(&self) -> Vec<&ReplicaSet> {
        self.old.iter().chain(self.new.as_ref()).collect()
    }

    /// Finds the new ReplicaSet (creating it when `create`), brings its revision and annotations up to
    /// date, and records the revision on the Deployment.
    async fn adopt_revisions(&mut self, owned: Vec<ReplicaSet>, create: bool) -> kube::Result<()> {
        self.split(owned);
        let new_revision = self.old.iter().map(revision::revision).max().unwrap_or(0) + 1;
        let (surge, _) = fenceposts(self.d);
        match self.new.take() {
            Some(rs) => {
                let annotations = revision::new_rs_annotations(self.d, Some(&rs), new_revision, surge);
                let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
                let stale_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
                let rs = if &annotations != rs.annotations() || stale_min_ready {
                    let patch = json!({"metadata": {"annotations": annotations, "resourceVersion": rs.resource_version()},
                        "spec": {"minReadySeconds": min_ready}});
                    self.api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?
                } else {
                    rs
                };
                let has_progressing =
                    self.d.status.as_ref().and_then(|s| status::get_condition(s, "Progressing")).is_some();
                if !has_progressing {
                    let message = format!("Found new replica set {:?}", rs.name_any());
                    self.progressing = Some(status::condition("Progressing", "True", status::FOUND_NEW_RS, &message));
                }
                self.new = Some(rs);
            }
            None if create => self.new = Some(self.create_new(new_revision, surge).await?),
            None => {}
        }
        if let Some(rs) = &self.new {
            self.record_revision(&revision::revision(rs).to_string()).await?;
        }
        Ok(())
    }

    async fn record_revision(&self, value: &str) -> kube::Result<()> {
        if self.d.annotations().get(revision::REVISION).map(String::as_str) == Some(value) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.context.client.clone(), &self.d.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {revision::REVISION: value}}});
        api.patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
    }

    /// Creates the ReplicaSet of the Deployment's template, named and selected by its hash. A name taken
    /// by a different template is a hash collision: collisionCount goes up and the next sync tries again.
    async fn create_new(&mut self, new_revision: i64, surge: i32) -> kube::Result<ReplicaSet> {
        let d = self.d;
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = revision::deployment_template(d);
        let hash = revision::template_hash(&template, collisions);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(Default::default).insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", d.name_any());
        let all: Vec<Rs> = views(&self.all());
        let initial = if is_recreate(d) {
            replicas(d)
        } else {
            let empty = Rs { name: name.clone(), replicas: 0, available: 0, age_rank: all.len(), sized_for: None };
            plan::new_rs_replicas(replicas(d), surge, &all, &empty)
        };
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": d.namespace(),
                "labels": template.metadata.as_ref().and_then(|m| m.labels.clone()),
                "annotations": revision::new_rs_annotations(d, None, new_revision, surge),
                "ownerReferences": [claim::controller_ref(d)],
            },
            "spec": {"replicas": initial, "minReadySeconds": d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                "selector": selector, "template": template},
        }))
        .map_err(kube::Error::SerdeError)?;
        match self.api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                let message = format!("Created new replica set {name:?}");
                self.progressing = Some(status::condition("Progressing", "True", status::NEW_RS_CREATED, &message));
                if initial > 0 {
                    self.scaled_event(&name, 0, initial);
                }
                Ok(created)
            }
            Err(kube::Error::Api(error)) if error.code == 409 => {
                let existing = self.api.get(&name).await?;
                let ours = claim::controller_of(&existing).is_some_and(|o| Some(&o.uid) == d.uid().as_ref());
                if ours && revision::same_template(&revision::template_of(&existing), &revision::deployment_template(d))
                {
                    return Ok(existing);
                }
                let api: Api<Deployment> =
                    Api::namespaced(self.context.client.clone(), &d.namespace().unwrap_or_default());
                let patch = json!({"status": {"collisionCount": collisions.unwrap_or(0) + 1}});
                api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
                Err(kube::Error::Api(error))
            }
            Err(e) => Err(e),
        }
    }

    fn scaled_event(&self, name: &str, from: i32, to: i32) {
        let direction = if to > from { "up" } else { "down" };
        let message = format!("Scaled {direction} replica set {name} from {from} to {to}");
        self.context.recorder.emit(self.d.object_ref(&()), EventType::Normal, "ScalingReplicaSet", message);
    }

    /// Sets a ReplicaSet's size (and the Deployment size it was set for), guarded by its resourceVersion.
    async fn resize(&mut self, name: &str, size: i32) -> kube::Result<()> {
        let (surge, _) = fenceposts(self.d);
        let Some(rs) = self.old.iter_mut().chain(self.new.as_mut()).find(|rs| rs.name_any() == name) else {
            return Ok(());
        };
        let from = spec_replicas(rs);
        let desired = replicas(self.d);
        let patch = json!({
            "metadata": {"resourceVersion": rs.resource_version(), "annotations": {
                revision::DESIRED_REPLICAS: desired.to_string(), revision::MAX_REPLICAS: (desired + surge).to_string()}},
            "spec": {"replicas": size},
        });
        *rs = self.api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        if from != size {
            self.scaled_event(name, from, size);
        }
        Ok(())
    }

    /// RollingUpdate: grow the new ReplicaSet within the surge, else shrink the old ones within the
    /// availability budget.
    async fn roll(&mut self) -> kube::Result<()> {
        let Some(new) = self.new.as_ref() else {
            return Ok(());
        };
        let (surge, max_unavailable) = fenceposts(self.d);
        let wanted = replicas(self.d);
        let new_view = views(&[new]).remove(0);
        let target = if new_view.replicas > wanted {
            wanted
        } else {
            plan::new_rs_replicas(wanted, surge, &views(&self.all()), &new_view)
        };
        if target != new_view.replicas {
            return self.resize(&new_view.name, target).await;
        }
        let old: Vec<&ReplicaSet> = self.old.iter().collect();
        for (name, size) in plan::shrink_old(wanted, max_unavailable, &views(&old), &new_view) {
            self.resize(&name, size).await?;
        }
        Ok(())
    }

    /// Recreate: scale the old ReplicaSets to zero, wait for their pods to be gone, then create and
    /// scale the new one. True while old pods are still running.
    async fn recreate(&mut self) -> kube::Result<bool> {
        let active_old: Vec<String> =
            self.old.iter().filter(|rs| spec_replicas(rs) > 0).map(|rs| rs.name_any()).collect();
        for name in &active_old {
            self.resize(name, 0).await?;
        }
        if !active_old.is_empty() || self.old_pods_running().await? {
            return Ok(true);
        }
        if self.new.is_none() {
            let new_revision = self.old.iter().map(revision::revision).max().unwrap_or(0) + 1;
            self.new = Some(self.create_new(new_revision, 0).await?);
            if let Some(rs) = &self.new {
                self.record_revision(&revision::revision(rs).to_string()).await?;
            }
        }
        if let Some(new) = self.new.as_ref().filter(|rs| spec_replicas(rs) != replicas(self.d)) {
            let name = new.name_any();
            self.resize(&name, replicas(self.d)).await?;
        }
        Ok(false)
    }

    /// Whether any pod of an old ReplicaSet still exists and has not finished.
    async fn old_pods_running(&self) -> kube::Result<bool> {
        let old_uids: Vec<String> = self.old.iter().filter_map(|rs| rs.uid()).collect();
        if old_uids.is_empty() {
            return Ok(false);
        }
        let api: Api<Pod> = Api::namespaced(self.context.client.clone(), &self.d.namespace().unwrap_or_default());
        let selector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let selector = Selector::try_from(selector).map(|s| s.to_string()).unwrap_or_default();
        let listed = api.list(&ListParams::default().labels(&selector)).await?;
        Ok(listed.items.iter().any(|pod| {
            claim::controller_of(pod).is_some_and(|o| old_uids.contains(&o.uid))
                && !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
        }))
    }

    /// A paused Deployment or a scale mid-rollout: size the ReplicaSets without rolling.
    async fn scale(&mut self) -> kube::Result<()> {
        let wanted = replicas(self.d);
        let mut active: Vec<&ReplicaSet> = self.all().into_iter().filter(|rs| spec_replicas(rs) > 0).collect();
        let sole = match active.len() {
            0 => self.new.as_ref().or_else(|| self.old.iter().max_by_key(|rs| rs.creation_timestamp().map(|t| t.0))),
            1 => active.pop(),
            _ => None,
        };
        if let Some(rs) = sole {
            if spec_replicas(rs) != wanted {
                let name = rs.name_any();
                self.resize(&name, wanted).await?;
            }
            return Ok(());
        }
        let saturated = self.new.as_ref().is_some_and(|rs| {
            spec_replicas(rs) == wanted
                && rs.annotations().get(revision::DESIRED_REPLICAS) == Some(&wanted.to_string())
                && rs.status.as_ref().and_then(|s| s.available_replicas) == Some(wanted)
        });
        if saturated {
            let old: Vec<String> = self.old.iter().filter(|rs| spec_replicas(rs) > 0).map(|rs| rs.name_any()).collect();
            for name in old {
                self.resize(&name, 0).await?;
            }
            return Ok(());
        }
        if is_recreate(self.d) {
            return Ok(());
        }
        let (surge, _) = fenceposts(self.d);
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let sizes = plan::proportional(wanted, surge, &views(&active), status_replicas);
        for (name, size) in sizes {
            self.resize(&name, size).await?;
        }
        Ok(())
    }

    /// Trims history once the rollout is complete (or while paused), then writes the status.
    async fn finish(&self, trim_history: bool) -> kube::Result<Action> {
        let (_, max_unavailable) = fenceposts(self.d);
        let all = self.all();
        let mut next = status::calculate(self.d, &all, self.new.as_ref(), max_unavailable);
        if let Some(condition) = self.progressing.clone() {
            status::set_condition(&mut next, condition);
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        status::pause_condition(self.d, &mut next);
        let recheck = if paused { None } else { status::progress(self.d, &mut next, self.new.as_ref()) };
        if trim_history && (paused || status::is_complete(self.d, &next)) {
            let old: Vec<&ReplicaSet> = self.old.iter().collect();
            for rs in revision::beyond_history_limit(self.d, &old) {
                match self.api.delete(&rs.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if self.d.status.as_ref() != Some(&next) {
            let api: Api<Deployment> =
                Api::namespaced(self.context.client.clone(), &self.d.namespace().unwrap_or_default());
            let patch = Patch::Merge(json!({"status": next}));
            api.patch_status(&self.d.name_any(), &PatchParams::default(), &patch).await?;
        }
        Ok(Action::requeue(recheck.unwrap_or(Duration::from_secs(300))))
    }
}
