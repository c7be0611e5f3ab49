//! Which namespaces exist and which are terminating, kept in memory from the store's own watch so that
//! a namespaced create does not read the store. A miss falls back to a read, so a namespace created a
//! moment ago is never refused; if the watch falls behind, the cache relists.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;

use crate::apiserver::object;
use crate::store::{EventKind, ListOptions, Store};

const PREFIX: &str = "/registry/core/namespaces/";

/// Namespace name → whether it is terminating.
#[derive(Clone, Default)]
pub struct NamespaceCache(Arc<RwLock<HashMap<String, bool>>>);

impl NamespaceCache {
    /// Starts following the namespaces in `store` (needs a tokio runtime).
    pub fn follow(store: Store) -> NamespaceCache {
        let cache = NamespaceCache::default();
        let filler = cache.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = filler.sync(&store).await {
                    tracing::debug!(error = %e, "namespace cache relists");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        cache
    }

    /// Whether `name` is known to be terminating; None when the cache does not know it.
    pub fn terminating(&self, name: &str) -> Option<bool> {
        self.0.read().ok()?.get(name).copied()
    }

    fn set(&self, name: String, value: Option<bool>) {
        if let Ok(mut map) = self.0.write() {
            match value {
                Some(t) => map.insert(name, t),
                None => map.remove(&name),
            };
        }
    }

    /// Lists, then follows the watch until it ends.
    async fn sync(&self, store: &Store) -> Result<(), String> {
        let page = store.list(PREFIX, ListOptions::default()).await.map_err(|e| e.to_string())?;
        let mut fresh = HashMap::new();
        for record in &page.records {
            let obj = object::decode(record).map_err(|e| e.message)?;
            fresh.insert(name_of(&record.key), object::is_terminating(&obj));
        }
        if let Ok(mut map) = self.0.write() {
            *map = fresh;
        }
        let mut watch = store.watch(PREFIX, page.revision).await.map_err(|e| e.to_string())?;
        while let Some(event) = watch.next().await {
            let event = event.map_err(|e| e.to_string())?;
            let name = name_of(&event.record.key);
            match event.kind {
                EventKind::Deleted => self.set(name, None),
                _ => {
                    let obj: Value = object::decode(&event.record).map_err(|e| e.message)?;
                    self.set(name, Some(object::is_terminating(&obj)));
                }
            }
        }
        Ok(())
    }
}

fn name_of(key: &str) -> String {
    key.strip_prefix(PREFIX).unwrap_or(key).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    #[tokio::test]
    async fn follows_creates_terminations_and_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("store");
        let key = format!("{PREFIX}a");
        let created = store
            .apply(Command::Create { key: key.clone(), value: br#"{"metadata":{"name":"a"}}"#.to_vec() })
            .await
            .expect("store")
            .expect("created");
        let cache = NamespaceCache::follow(store.clone());
        let wait = |want: Option<bool>| {
            let cache = cache.clone();
            async move {
                for _ in 0..200 {
                    if cache.terminating("a") == want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("cache never showed {want:?}");
            }
        };
        wait(Some(false)).await;
        let terminating = br#"{"metadata":{"name":"a","deletionTimestamp":"2026-01-01T00:00:00Z"}}"#.to_vec();
        let update = Command::Update { key: key.clone(), value: terminating, expected_revision: created.mod_revision };
        let updated = store.apply(update).await.expect("store").expect("updated");
        wait(Some(true)).await;
        store
            .apply(Command::Delete { key, expected_revision: updated.mod_revision })
            .await
            .expect("store")
            .expect("del");
        wait(None).await;
    }
}
