//! Recording Events the way client-go's recorder does for the scheduler and controllers: a repeat of the
//! same event on the same object within ten minutes bumps `count` and `lastTimestamp` on the one Event
//! instead of writing a new one, and a per-object token bucket (burst 25, one more every five minutes)
//! drops the rest, so a hot loop cannot flood the store. Events are written through the API, and are
//! best effort: a failed write is logged, never retried (a repeat whose Event is missing writes it anew).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

const DEDUPE_WINDOW: Duration = Duration::from_secs(600);
const BURST: f64 = 25.0;
const REFILL_EVERY: Duration = Duration::from_secs(300);
/// Past this many remembered events, those outside the dedupe window are forgotten.
const MEMORY: usize = 4096;

/// The kube-system Namespace, which server-wide events (manifests, certificates) are about.
pub fn kube_system_namespace() -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        name: Some("kube-system".into()),
        namespace: Some("kube-system".into()),
        ..Default::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Seen {
    name: String,
    count: i32,
    at: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// The tokens there are at `now`.
    fn tokens_at(&self, now: Instant) -> f64 {
        let refilled = now.duration_since(self.at).as_secs_f64() / REFILL_EVERY.as_secs_f64();
        (self.tokens + refilled).min(BURST)
    }

    fn take(&mut self, now: Instant) -> bool {
        self.tokens = self.tokens_at(now);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct Memory {
    seen: HashMap<String, Seen>,
    buckets: HashMap<String, Bucket>,
}

/// What to write for one event.
enum Write {
    Create(String),
    Bump(String, i32),
    Drop,
}

/// Records events as one component (`default-scheduler`, `replicaset-controller`, …).
pub struct Recorder {
    client: Client,
    component: &'static str,
    memory: Mutex<Memory>,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Arc<Recorder> {
        Arc::new(Recorder { client, component, memory: Mutex::default() })
    }

    /// Records in the background.
    pub fn emit(self: &Arc<Self>, regarding: ObjectReference, kind: EventType, reason: &str, message: String) {
        let recorder = self.clone();
        let reason = reason.to_string();
        tokio::spawn(async move { recorder.record(&regarding, kind, &reason, &message).await });
    }

    pub async fn record(&self, regarding: &ObjectReference, kind: EventType, reason: &str, message: &str) {
        let namespace = regarding.namespace.clone().filter(|ns| !ns.is_empty()).unwrap_or_else(|| "default".into());
        let object = format!(
            "{}/{}/{}/{}",
            regarding.kind.as_deref().unwrap_or(""),
            namespace,
            regarding.name.as_deref().unwrap_or(""),
            regarding.uid.as_deref().unwrap_or("")
        );
        let now = jiff::Timestamp::now();
        let write = self.decide(&object, &format!("{object}\n{}\n{reason}\n{message}", kind.as_str()), now);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let (name, count) = match write {
            Write::Drop => return,
            Write::Bump(name, count) => (name, count),
            Write::Create(name) => (name, 1),
        };
        let bump = Patch::Merge(json!({"count": count, "lastTimestamp": Time(now)}));
        let bumped =
            if count > 1 { Some(api.patch(&name, &PatchParams::default(), &bump).await.map(drop)) } else { None };
        let result = match bumped {
            Some(Err(kube::Error::Api(status))) if status.code == 404 => None,
            other => other,
        };
        // New, or its first write was lost or has since been deleted: write it whole.
        let result = match result {
            Some(result) => result,
            None => {
                let event = Event {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace),
                        ..Default::default()
                    },
                    involved_object: regarding.clone(),
                    reason: Some(reason.to_string()),
                    message: Some(message.to_string()),
                    type_: Some(kind.as_str().to_string()),
                    count: Some(count),
                    first_timestamp: Some(Time(now)),
                    last_timestamp: Some(Time(now)),
                    source: Some(EventSource { component: Some(self.component.to_string()), host: None }),
                    reporting_component: Some(self.component.to_string()),
                    reporting_instance: Some(self.component.to_string()),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &event).await {
                    // A repeat raced the first write of it: bump what that wrote.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        api.patch(&name, &PatchParams::default(), &bump).await.map(drop)
                    }
                    other => other.map(drop),
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, reason, "could not record an event");
        }
    }

    /// Dedupes against what was recorded, then spends a token of the object's bucket.
    fn decide(&self, object: &str, key: &str, now: jiff::Timestamp) -> Write {
        let instant = Instant::now();
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = memory.buckets.entry(object.to_string()).or_insert(Bucket { tokens: BURST, at: instant });
        if !bucket.take(instant) {
            return Write::Drop;
        }
        if memory.seen.len() > MEMORY {
            memory.seen.retain(|_, s| instant.duration_since(s.at) < DEDUPE_WINDOW);
            memory.buckets.retain(|_, b| b.tokens_at(instant) < BURST);
        }
        match memory.seen.get_mut(key) {
            Some(seen) if instant.duration_since(seen.at) < DEDUPE_WINDOW => {
                seen.count += 1;
                seen.at = instant;
                Write::Bump(seen.name.clone(), seen.count)
            }
            _ => {
                let stem = object.split('/').nth(2).unwrap_or("event");
                let name = format!("{stem}.{:x}", now.as_nanosecond());
                memory.seen.insert(key.to_string(), Seen { name: name.clone(), count: 1, at: instant });
                Write::Create(name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> Recorder {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other("offline"))
        });
        Recorder { client: Client::new(service, "default"), component: "test", memory: Mutex::default() }
    }

    #[tokio::test]
    async fn repeats_bump_one_event_and_a_flood_is_cut_off() {
        let r = recorder();
        let now = jiff::Timestamp::now();
        let Write::Create(name) = r.decide("Pod/ns/web/u1", "k", now) else { panic!("first is a create") };
        assert!(name.starts_with("web."));
        assert!(matches!(r.decide("Pod/ns/web/u1", "k", now), Write::Bump(n, 2) if n == name));
        assert!(matches!(r.decide("Pod/ns/web/u1", "other", now), Write::Create(_)));
        let written = (0..100).filter(|_| !matches!(r.decide("Pod/ns/web/u1", "k", now), Write::Drop)).count();
        assert_eq!(written, 22, "the burst of 25 is spent");
        assert!(matches!(r.decide("Pod/ns/other/u2", "k2", now), Write::Create(_)), "buckets are per object");
    }
}
