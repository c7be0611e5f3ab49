//! Watch: a chunked stream of JSON WatchEvents (or Table rows for `kubectl get -w`) from a revision,
//! with selectors applied per event (an object moving out of a selector is DELETED, into it ADDED),
//! initial events, bookmarks, timeouts, and 410 Expired as an ERROR event when the revision is gone.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::core::registry::ResourceInfo;
use crate::store::{EventKind, StoreError, WatchError};

use super::fields;
use super::negotiate::{self, IncludeObject, Output};
use super::object;
use super::query::Query;
use super::rest::{ListQuery, Rest};
use super::status::{ApiError, ApiResult};

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// How each event is rendered.
struct Renderer {
    res: &'static ResourceInfo,
    output: Output,
    include: IncludeObject,
    first: bool,
}

impl Renderer {
    /// Renders a store event; plain JSON watchers share one serialization of the object.
    fn stored_event(&mut self, kind: &str, event: &crate::store::Event) -> ApiResult<Bytes> {
        if let Output::Metadata { beta } = self.output {
            let metadata = cached(&event.decoded_metadata, || object::decode_metadata(&event.record))?;
            return Ok(line(&json!({"type": kind, "object": negotiate::partial_of_metadata(metadata.clone(), beta)})));
        }
        if self.output != Output::Json {
            return Ok(self.event(kind, decoded(event)?.clone()));
        }
        let object = rendered(event)?;
        let mut out = Vec::with_capacity(object.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        out.extend_from_slice(&object);
        out.extend_from_slice(b"}\n");
        Ok(Bytes::from(out))
    }

    fn event(&mut self, kind: &str, obj: Value) -> Bytes {
        let object = match self.output {
            Output::Json => obj,
            Output::Metadata { beta } => negotiate::partial(&obj, beta),
            Output::Table { beta } => {
                let meta = json!({"resourceVersion": object::resource_version(&obj).unwrap_or("")});
                let t = negotiate::table(self.res, &[obj], self.include, beta, self.first, meta);
                self.first = false;
                t
            }
        };
        line(&json!({"type": kind, "object": object}))
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta}}),
        )
    }
}

fn line(v: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn error_event(err: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": err.to_status()}))
}

/// Starts a watch and returns the streaming response.
pub async fn serve(
    rest: &Rest,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    query: &Query,
    headers: &HeaderMap,
) -> ApiResult<axum::response::Response> {
    let output = negotiate::output(headers)?;
    let include = IncludeObject::parse(query.get("includeObject"))?;
    let mut filter = query.list()?;
    filter.limit = 0;
    filter.continue_token = None;
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.get("sendInitialEvents").map(|v| v == "true");
    let rv = query.get("resourceVersion").unwrap_or("").to_string();
    let timeout = match query.number("timeoutSeconds")? {
        Some(secs) => Duration::from_secs(secs as u64),
        // Upstream spreads long-running requests between 30 and 60 minutes.
        None => Duration::from_secs(1800 + (uuid::Uuid::new_v4().as_u128() % 1800) as u64),
    };
    if send_initial == Some(true) && !bookmarks {
        return Err(ApiError::invalid(
            res,
            "",
            vec![super::status::FieldError::forbidden(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            )],
        ));
    }
    let initial = send_initial.unwrap_or(rv.is_empty() || rv == "0");
    // Initial state comes from a list at one revision; the watch continues right after it.
    let (initial_items, start) = if initial {
        let list_filter =
            ListQuery { labels: filter.labels.clone(), fields: filter.fields.clone(), ..Default::default() };
        let out = rest.list(res, ns, &list_filter).await?;
        (out.items, out.revision)
    } else {
        (Vec::new(), object::parse_resource_version(&rv)?)
    };
    let prefix = object::prefix(res, ns);
    let mut renderer = Renderer { res, output, include, first: true };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let stream = rest.store.watch(&prefix, start).await;
    let mut stream = match stream {
        Ok(s) => s,
        Err(StoreError::Compacted { requested, compacted }) => {
            let _ = tx
                .send(Ok(error_event(&ApiError::gone(format!("too old resource version: {requested} ({compacted})")))))
                .await;
            drop(tx);
            return Ok(streaming(rx));
        }
        Err(e) => return Err(e.into()),
    };
    tokio::spawn(async move {
        for obj in initial_items {
            if tx.send(Ok(renderer.event("ADDED", obj))).await.is_err() {
                return;
            }
        }
        if send_initial == Some(true) && tx.send(Ok(renderer.bookmark(start, true))).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(renderer.bookmark(stream.last_revision(), false))).await.is_err() { return; }
                }
                event = stream.next() => {
                    let chunk = match event {
                        None => return,
                        Some(Err(WatchError::Lagged)) => {
                            let _ = tx.send(Ok(error_event(&ApiError::gone("too old resource version: the watcher fell behind")))).await;
                            return;
                        }
                        Some(Ok(event)) => match classify(res, &filter, &event).and_then(|k| match k {
                            Some(kind) => renderer.stored_event(kind, &event).map(Some),
                            None => Ok(None),
                        }) {
                            Ok(Some(chunk)) => chunk,
                            Ok(None) => continue,
                            Err(e) => error_event(&e),
                        },
                    };
                    if tx.send(Ok(chunk)).await.is_err() { return; }
                }
            }
        }
    });
    Ok(streaming(rx))
}

fn streaming(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> axum::response::Response {
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| axum::response::IntoResponse::into_response(ApiError::internal("watch response")))
}

/// The event a watcher with `filter` sees for a store event, if any.
/// The event type a watcher with `filter` sees for a store event, if any. Without selectors nothing is
/// decoded; with them, the selectable parts of the object and of its previous value are matched.
fn classify(res: &ResourceInfo, filter: &ListQuery, event: &crate::store::Event) -> ApiResult<Option<&'static str>> {
    if filter.labels.is_none() && filter.fields.is_none() {
        return Ok(Some(match event.kind {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }));
    }
    let part = |bytes: &[u8]| object::decode_at(bytes, event.record.mod_revision).map(|v| fields::selectable(res, &v));
    let now = filter.matches(res, cached(&event.selectable, || part(&event.record.value))?);
    let before = match &event.prev {
        Some(prev) => filter.matches(res, cached(&event.selectable_prev, || part(prev))?),
        None => false,
    };
    Ok(match event.kind {
        EventKind::Added if now => Some("ADDED"),
        EventKind::Modified if now && before => Some("MODIFIED"),
        EventKind::Modified if now => Some("ADDED"),
        EventKind::Modified if before => Some("DELETED"),
        EventKind::Deleted if now => Some("DELETED"),
        _ => None,
    })
}

/// The value in `slot`, computed by `make` the first time.
fn cached<T>(slot: &std::sync::OnceLock<T>, make: impl FnOnce() -> ApiResult<T>) -> ApiResult<&T> {
    if let Some(v) = slot.get() {
        return Ok(v);
    }
    let v = make()?;
    Ok(slot.get_or_init(|| v))
}

/// The event's object, decoded once for all watchers.
fn decoded(event: &crate::store::Event) -> ApiResult<&Value> {
    cached(&event.decoded, || object::decode(&event.record))
}

/// The event's object as JSON, rendered once for all watchers.
fn rendered(event: &crate::store::Event) -> ApiResult<Bytes> {
    cached(&event.rendered, || {
        let (stored, revision) = (&event.record.value, event.record.mod_revision);
        match super::json::with_revision(stored, revision) {
            Some(json) => Ok(Bytes::from(json)),
            None => Ok(Bytes::from(super::json::to_json(decoded(event)?))),
        }
    })
    .cloned()
}
