//! The node's view of Services and EndpointSlices: one watch of each for the whole agent, kept in
//! kube-rs reflector stores, shared by the proxy and the cluster DNS. Every change bumps a counter
//! that both wait on.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;

/// The caches and their change counter.
#[derive(Clone)]
pub struct ServiceCache {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    changes: watch::Receiver<u64>,
    /// Whether both stores hold a complete list. (A reflector store wakes only one of several tasks
    /// waiting for it to be ready, so one task waits and tells the others through this.)
    synced: watch::Receiver<bool>,
}

impl ServiceCache {
    /// Starts both watches (they run as long as the returned task).
    pub fn start(client: &Client) -> (ServiceCache, tokio::task::JoinHandle<()>) {
        let (services, service_writer) = reflector::store();
        let (slices, slice_writer) = reflector::store();
        let (bump, changes) = watch::channel(0u64);
        let service_events = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(service_writer)
            .map(|_| ());
        let slice_events = watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(slice_writer)
            .map(|_| ());
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(futures::stream::select(service_events, slice_events));
            while events.next().await.is_some() {
                bump.send_modify(|count| *count += 1);
            }
        });
        let (set_synced, synced) = watch::channel(false);
        let (service_store, slice_store) = (services.clone(), slices.clone());
        tokio::spawn(async move {
            if service_store.wait_until_ready().await.is_ok() && slice_store.wait_until_ready().await.is_ok() {
                let _ = set_synced.send(true);
            }
        });
        (ServiceCache { services, slices, changes, synced }, task)
    }

    /// Waits until both caches hold a complete list.
    pub async fn synced(&self) {
        let _ = self.synced.clone().wait_for(|synced| *synced).await;
    }

    /// A receiver that sees every later change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    pub fn services(&self) -> Vec<Arc<Service>> {
        self.services.state()
    }

    pub fn slices(&self) -> Vec<Arc<EndpointSlice>> {
        self.slices.state()
    }
}
