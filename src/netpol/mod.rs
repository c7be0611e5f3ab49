//! NetworkPolicy enforcement on the node (k3s embeds kube-router's controller for this): the pods of
//! this node that policies isolate get filter-table chains and ipsets (`model.rs` resolves the
//! policies, `render.rs` lays the rules out), applied as the proxy applies its rules — one
//! iptables-restore of what changed, at most once per second. The Pods and Namespaces of the whole
//! cluster are watched only once a NetworkPolicy exists, so nodes of clusters without policies pay
//! nothing for them.

pub mod model;
pub mod render;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::iptables::{self, Iptables, Ruleset, Table};

const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How soon a failed sync is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// A watched kind: its store and whether its first list is in.
struct Watched<K: kube::Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    listed: Arc<AtomicBool>,
}

impl<K> Watched<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    /// Watches every `K`, bumping `changed` at each event.
    fn start(client: &Client, changed: &watch::Sender<u64>) -> Watched<K> {
        let (store, writer) = reflector::store();
        let listed = Arc::new(AtomicBool::new(false));
        let events =
            watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(writer);
        let (flag, bump) = (listed.clone(), changed.clone());
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                if matches!(event, Ok(watcher::Event::InitDone)) {
                    flag.store(true, Ordering::Release);
                }
                bump.send_modify(|count| *count += 1);
            }
        });
        Watched { store, listed }
    }

    fn listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }
}

/// Enforces the policies for the pods of `node` until `stop` turns true. While no policy exists
/// nothing of it is in the host's tables (rules left by an earlier run are removed).
pub async fn run(client: Client, iptables: Iptables, node: String, mut stop: watch::Receiver<bool>) {
    let (changed, mut changes) = watch::channel(0u64);
    let policies = Watched::<NetworkPolicy>::start(&client, &changed);
    let mut world: Option<(Watched<Pod>, Watched<Namespace>)> = None;
    // What the last sync applied; None when it must be read back from the host first.
    let mut applied: Option<Ruleset> = None;
    let mut maybe_in_force = true;
    let mut due = false;
    let mut retry = tokio::time::interval(RETRY);
    loop {
        let started = Instant::now();
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            changed = changes.changed() => match changed {
                Ok(()) => due = true,
                Err(_) => return,
            },
            _ = retry.tick() => {}
        }
        if !due || !policies.listed() {
            continue;
        }
        let current = policies.store.state();
        if current.is_empty() {
            if maybe_in_force {
                match remove(&iptables).await {
                    Ok(()) => (maybe_in_force, applied) = (false, None),
                    Err(error) => log_failure(&error),
                }
            }
            due = maybe_in_force;
            continue;
        }
        let (pods, namespaces) = world.get_or_insert_with(|| {
            tracing::info!("network policies: a policy exists; watching pods and namespaces");
            (Watched::start(&client, &changed), Watched::start(&client, &changed))
        });
        if !(pods.listed() && namespaces.listed()) {
            continue;
        }
        let (pods, namespaces) = (pods.store.state(), namespaces.store.state());
        let isolated = model::isolated(&current, &model::World { pods: &pods, namespaces: &namespaces }, &node);
        maybe_in_force = true;
        match apply(&iptables, applied.take(), &isolated).await {
            Ok(now) => (applied, due) = (Some(now), false),
            Err(error) => log_failure(&error),
        }
        tokio::time::sleep_until((started + MIN_SYNC_INTERVAL).into()).await;
    }
}

fn log_failure(error: &dyn std::fmt::Display) {
    tracing::error!(%error, retry_in = ?RETRY, "network policies: cannot apply");
}

/// Sets first, then the chains that use them, then the jump (kept first in FORWARD, before any rule
/// that accepts); sets no longer used go last.
async fn apply(iptables: &Iptables, applied: Option<Ruleset>, isolated: &[model::Isolated]) -> anyhow::Result<Ruleset> {
    let (next, sets) = render::render(isolated);
    iptables::exec("ipset", &["restore"], Some(&render::ipset_payload(&sets))).await?;
    let applied = match applied {
        Some(applied) => applied,
        None => iptables.owned_chains(render::owns).await?,
    };
    iptables.restore(&applied.transition_to(&next)).await?;
    iptables.ensure_first(Table::Filter, "FORWARD", &render::JUMP, render::POLICIES).await?;
    for stale in our_sets().await?.into_iter().filter(|name| !sets.contains_key(name)) {
        iptables::exec("ipset", &["destroy", &stale], None).await?;
    }
    Ok(next)
}

/// Takes every policy rule and set of tug's out of the host (no policy exists, or enforcement is
/// turned off).
pub async fn remove(iptables: &Iptables) -> anyhow::Result<()> {
    iptables.delete_rule(Table::Filter, "FORWARD", &render::JUMP).await?;
    let applied = iptables.owned_chains(render::owns).await?;
    iptables.restore(&applied.transition_to(&Ruleset::default())).await?;
    match remove_sets().await {
        Err(iptables::IptablesError::Spawn { .. }) => Ok(()), // no ipset: no sets either
        other => Ok(other?),
    }
}

/// The names of tug's ipsets.
async fn our_sets() -> Result<Vec<String>, iptables::IptablesError> {
    let listed = iptables::exec("ipset", &["list", "-n"], None).await?;
    Ok(listed.lines().filter(|name| name.starts_with(render::SET_PREFIX)).map(str::to_string).collect())
}

/// Destroys tug's ipsets (the rules using them must be gone).
pub async fn remove_sets() -> Result<(), iptables::IptablesError> {
    for name in our_sets().await? {
        iptables::exec("ipset", &["destroy", &name], None).await?;
    }
    Ok(())
}
