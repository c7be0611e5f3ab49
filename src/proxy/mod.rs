//! The node's service proxy (kube-proxy's iptables mode, embedded in the agent): once both the
//! Service and the EndpointSlice caches are synced, it renders the whole ruleset from them
//! (`model.rs` → `render/`) and applies the difference from what is applied now in one
//! iptables-restore transaction, again after every change but at most once per [`MIN_SYNC_INTERVAL`].
//! The jumps from the built-in chains are checked every [`JUMP_CHECK_INTERVAL`]; after a failed sync,
//! and every [`FULL_SYNC_INTERVAL`], the applied state is read back from iptables-save so the next
//! sync repairs whatever changed under it.

pub mod cache;
pub mod model;
pub mod render;

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::iptables::{Iptables, Ruleset};
use cache::ServiceCache;

pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(1);
const JUMP_CHECK_INTERVAL: Duration = Duration::from_secs(60);
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs the proxy for `node` until `stop` turns true.
pub async fn run(cache: ServiceCache, iptables: Iptables, node: render::Node, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = cache.synced() => {}
        _ = stop.wait_for(|stop| *stop) => return,
    }
    let mut changes = cache.changes();
    let mut proxy = Proxy { iptables, node, applied: None, jumps_checked: None, full_synced: Instant::now() };
    loop {
        let started = Instant::now();
        proxy.sync(&cache).await;
        let next_allowed = started + MIN_SYNC_INTERVAL;
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(JUMP_CHECK_INTERVAL) => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
        tokio::time::sleep_until(next_allowed.into()).await;
    }
}

struct Proxy {
    iptables: Iptables,
    node: render::Node,
    /// What the last successful sync applied; None when it must be read back first.
    applied: Option<Ruleset>,
    jumps_checked: Option<Instant>,
    full_synced: Instant,
}

impl Proxy {
    async fn sync(&mut self, cache: &ServiceCache) {
        let started = Instant::now();
        if self.full_synced.elapsed() >= FULL_SYNC_INTERVAL {
            self.applied = None;
        }
        let applied = match self.applied.take() {
            Some(applied) => applied,
            None => match self.iptables.owned_chains(render::owns).await {
                Ok(existing) => {
                    self.full_synced = Instant::now();
                    existing
                }
                Err(error) => return tracing::error!(%error, "proxy: cannot read the applied rules"),
            },
        };
        let ports = model::service_ports(&cache.services(), &cache.slices());
        let next = render::render(&self.node, &ports);
        let payload = applied.transition_to(&next);
        if let Err(error) = self.iptables.restore(&payload).await {
            return tracing::error!(%error, "proxy: cannot apply the service rules");
        }
        tracing::debug!(
            ports = ports.len(),
            rules = next.rule_count(),
            chains_written = payload.chains_written,
            chains_deleted = payload.chains_deleted,
            took = ?started.elapsed(),
            "proxy: synced"
        );
        self.applied = Some(next);
        if self.jumps_checked.is_none_or(|at| at.elapsed() >= JUMP_CHECK_INTERVAL) {
            self.ensure_jumps().await;
        }
    }

    async fn ensure_jumps(&mut self) {
        for (table, chain, rule) in render::JUMPS {
            if let Err(error) = self.iptables.ensure_rule(table, chain, rule, false).await {
                // Read the rules back at the next sync: whatever removed a jump may have flushed more.
                self.applied = None;
                return tracing::error!(%error, "proxy: cannot add the jumps to the service rules");
            }
        }
        self.jumps_checked = Some(Instant::now());
    }
}
