//! One shared watch of a resource for all the loops that follow it (client-go's shared informer): a
//! single watch feeds a single cache, and every subscriber gets each touched object — created, changed
//! or deleted — from it, so ten controllers watching pods cost one watch and one copy of every pod, not
//! ten. (kube-rs's shared reflector does not pass deletions on, which the workload controllers need.)
//! A subscriber that falls a whole buffer behind is sent every cached object again, so it never misses
//! a change silently.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

/// How many touched objects a subscriber may be behind before it is resynced.
const BUFFER: usize = 16 * 1024;

/// The cache and the fan-out of one watched resource.
pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    touched: broadcast::Sender<Arc<K>>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    /// The informer of every object of `api`, and the watch that feeds it, to run once every
    /// subscriber has subscribed.
    pub fn new(api: Api<K>) -> (Informer<K>, impl std::future::Future<Output = ()> + Send + 'static) {
        let (store, mut writer) = reflector::store();
        let (touched, _) = broadcast::channel(BUFFER);
        let sender = touched.clone();
        let feed = async move {
            // No loop reads managedFields, often the larger half of an object: not kept (as upstream's
            // informers trim them).
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|obj: &mut K| obj.meta_mut().managed_fields = None);
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        writer.apply_watcher_event(&event);
                        if let watcher::Event::Apply(obj)
                        | watcher::Event::Delete(obj)
                        | watcher::Event::InitApply(obj) = event
                        {
                            let _ = sender.send(Arc::new(obj));
                        }
                    }
                    Err(error) => tracing::debug!(%error, "shared watch"),
                }
            }
        };
        (Informer { store, touched }, feed)
    }

    /// The shared cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every object touched from now on.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let store = self.store.clone();
        futures::stream::unfold(self.touched.subscribe(), move |mut receiver| {
            let store = store.clone();
            async move {
                let batch = match receiver.recv().await {
                    Ok(obj) => vec![obj],
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a subscriber fell behind the shared watch; resyncing it");
                        store.state()
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((futures::stream::iter(batch), receiver))
            }
        })
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;

    fn pod(name: &str) -> Pod {
        Pod { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_everything_cached_again() {
        let (store, mut writer) = reflector::store();
        let (touched, _) = broadcast::channel(2);
        let informer = Informer { store, touched };
        let mut events = Box::pin(informer.subscribe());
        for name in ["a", "b", "c", "d"] {
            writer.apply_watcher_event(&watcher::Event::Apply(pod(name)));
            informer.touched.send(Arc::new(pod(name))).expect("a subscriber");
        }
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(events.next().await.expect("event").metadata.name.clone().unwrap_or_default());
        }
        names.sort();
        assert_eq!(names, ["a", "b", "c", "d"], "the lag is made good from the cache");
    }
}
