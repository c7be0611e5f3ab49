//! The control loops of kube-controller-manager, each a tokio task over the in-process client (see
//! [`client`]) built on kube-rs's runtime (watcher, reflector, Controller), one file per controller;
//! [`ControlLoops`] also runs the scheduler beside them.

mod claim;
pub mod client;
pub mod cluster_dns;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod garbage_collector;
mod history;
mod informer;
mod job;
pub mod leader;
mod namespace;
mod node_ipam;
mod node_lifecycle;
mod pod_control;
pub(crate) mod pods;
mod replicaset;
mod replicated;
mod service_account;
mod service_lb;
mod statefulset;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::runtime::controller::Action;

/// What the loops need to know of the cluster.
#[derive(Clone)]
pub struct Settings {
    /// This server's identity as a Lease holder (see [`leader::identity`]).
    pub identity: String,
    /// The cluster CA, published in every namespace.
    pub ca_pem: String,
    /// The cluster network: node podCIDRs are carved from its cluster CIDR; which of its built-in
    /// components run.
    pub network: crate::network::ClusterNetwork,
    /// Silence after which a node is marked Unknown.
    pub node_monitor_grace_period: Duration,
}

/// The running control loops and scheduler; dropping this stops them.
pub struct ControlLoops {
    tasks: tokio::task::JoinSet<()>,
}

impl ControlLoops {
    /// Starts every control loop and the scheduler against the API router `app`, each as its upstream
    /// identity, each group only while this server holds its Lease (`kube-controller-manager`,
    /// `kube-scheduler`), as upstream's components do.
    pub fn start(app: axum::Router, settings: Settings) -> ControlLoops {
        let controllers = client::in_process(app.clone(), client::controller_manager());
        let scheduler = client::in_process(app, client::scheduler());
        let mut tasks = tokio::task::JoinSet::new();
        let identity = settings.identity.clone();
        let lead = controllers.clone();
        tasks.spawn(leader::run_while_leader(lead, "kube-controller-manager", identity.clone(), move || {
            controller_manager(controllers.clone(), settings.clone())
        }));
        let lead = scheduler.clone();
        tasks.spawn(leader::run_while_leader(lead, "kube-scheduler", identity, move || {
            crate::scheduler::run(scheduler.clone())
        }));
        ControlLoops { tasks }
    }

    /// Stops every loop.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Every loop of kube-controller-manager; they stop together when this is dropped.
async fn controller_manager(client: kube::Client, settings: Settings) {
    let mut tasks = tokio::task::JoinSet::new();
    let (pods, feed_pods) = informer::Informer::new(kube::Api::<Pod>::all(client.clone()));
    tasks.spawn(service_account::run(client.clone(), settings.ca_pem));
    tasks.spawn(node_lifecycle::run(client.clone(), settings.node_monitor_grace_period));
    tasks.spawn(node_ipam::run(client.clone(), settings.network.cluster_cidr));
    tasks.spawn(replicaset::run::<ReplicaSet>(client.clone(), pods.store(), pods.subscribe()));
    tasks.spawn(replicaset::run::<ReplicationController>(client.clone(), pods.store(), pods.subscribe()));
    tasks.spawn(deployment::run(client.clone()));
    tasks.spawn(garbage_collector::run(client.clone()));
    tasks.spawn(disruption::run(client.clone(), pods.store(), pods.subscribe()));
    tasks.spawn(endpoints::run(client.clone(), pods.store(), pods.subscribe()));
    tasks.spawn(job::run(client.clone(), pods.store(), pods.subscribe()));
    tasks.spawn(cronjob::run(client.clone()));
    tasks.spawn(daemonset::run(client.clone(), pods.store(), pods.subscribe()));
    tasks.spawn(statefulset::run(client.clone(), pods.store(), pods.subscribe()));
    if settings.network.dns {
        tasks.spawn(cluster_dns::run(client.clone()));
    }
    if settings.network.service_lb {
        tasks.spawn(service_lb::run(client.clone()));
    }
    tasks.spawn(namespace::run(client));
    tasks.spawn(feed_pods);
    tasks.join_all().await;
}

/// The error policy of every loop: log, then try again shortly (the API server is in-process, so errors
/// are conflicts and races that a fresh read resolves).
fn retry_later<K>(_: Arc<K>, error: &kube::Error, _: Arc<impl Sized>) -> Action {
    tracing::debug!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// A create that lost a race with another writer of the same name is not an error.
pub(crate) fn ignore_conflict<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A list for a merge patch: an emptied list is removed, as upstream never serializes one.
fn list_or_null<T: serde::Serialize>(list: &[T]) -> serde_json::Value {
    if list.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(list)
    }
}

/// The kube-rs description of a resource the registry serves, for dynamic clients.
fn api_resource(res: &crate::core::registry::ResourceInfo) -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: res.group.into(),
        version: res.version.into(),
        api_version: res.api_version(),
        kind: res.kind.into(),
        plural: res.plural.into(),
    }
}
