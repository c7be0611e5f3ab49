//! The generic REST storage every resource shares (upstream's registry store): get, list, create,
//! update, patch and delete over the store, with the object semantics users rely on — uid and timestamps,
//! generation, optimistic concurrency, status/spec separation, finalizers and graceful deletion, dry run.
//! Per-kind rules (defaults, validation, allocation) come from `admission`.

mod allocate;
mod create;
mod delete;
mod list;
mod namespaces;
mod update;

pub use allocate::ServiceNetwork;
pub use create::random_suffix;
pub use delete::{DeleteOptions, Deleted};
pub use list::{ListOut, ListQuery};
pub use update::{UpdateKind, UpdateOptions};

use std::sync::Arc;

use serde_json::Value;

use crate::core::registry::{self, ResourceInfo};
use crate::store::Store;

use super::admission::Admission;
use super::object;
use super::status::{ApiError, ApiResult};

/// How strictly unknown fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Per-request context of a write.
#[derive(Debug, Default)]
pub struct WriteContext {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    /// Server-side apply already recorded field ownership for this write.
    pub applied: bool,
    /// `force=true`: an apply takes fields from their other managers.
    pub force: bool,
    /// Warnings for the `Warning` response header.
    pub warnings: Vec<String>,
}

/// The REST layer; cheap to clone.
#[derive(Clone)]
pub struct Rest {
    pub store: Store,
    pub admission: Arc<Admission>,
    network: ServiceNetwork,
    namespaces: namespaces::NamespaceCache,
}

impl WriteContext {
    /// Records the fields this write changed under its field manager (unless it is an apply, which
    /// recorded them itself).
    fn track(&self, res: &ResourceInfo, old: Option<&Value>, new: &mut Value, subresource: Option<&str>) {
        if !self.applied {
            let manager = self.field_manager.as_deref().unwrap_or("unknown");
            super::patch::managed::track_update(res, old, new, manager, subresource, &object::now_rfc3339());
        }
    }
}

impl Rest {
    /// The REST layer over `store`; follows the store's namespaces (needs a tokio runtime).
    pub fn new(store: Store, admission: Admission, network: ServiceNetwork) -> Rest {
        let namespaces = namespaces::NamespaceCache::follow(store.clone());
        Rest { store, admission: Arc::new(admission), network, namespaces }
    }

    /// Reads one object.
    pub async fn get(&self, res: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        let record = self.store.get(&object::key(res, ns, name)).await?;
        match record {
            Some(record) => object::decode(&record),
            None => Err(ApiError::not_found(res, name)),
        }
    }

    /// The core group's resource `plural`.
    pub fn core_resource(plural: &str) -> ApiResult<&'static ResourceInfo> {
        registry::find("", "v1", plural).ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))
    }

    /// Reads one object of the core group's `plural`; None when it does not exist.
    pub async fn find_core(&self, plural: &str, ns: Option<&str>, name: &str) -> ApiResult<Option<Value>> {
        match self.get(Rest::core_resource(plural)?, ns, name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks that `ns` exists and, for creates, is not being deleted.
    async fn check_namespace(&self, ns: &str, creating: bool) -> ApiResult<()> {
        match self.namespaces.terminating(ns) {
            Some(false) => return Ok(()),
            Some(true) if creating => return Err(terminating(ns)),
            _ => {}
        }
        let found = self.get(Rest::core_resource("namespaces")?, None, ns).await?;
        if creating && object::is_terminating(&found) {
            return Err(terminating(ns));
        }
        Ok(())
    }
}

fn terminating(ns: &str) -> ApiError {
    ApiError::forbidden(format!("unable to create new content in namespace {ns} because it is being terminated"))
}

/// The namespace a request's object must carry: the path's, checked against the body's.
fn reconcile_namespace(res: &ResourceInfo, path_ns: Option<&str>, obj: &mut Value) -> ApiResult<Option<String>> {
    if !res.namespaced {
        object::meta_mut(obj).remove("namespace");
        return Ok(None);
    }
    let ns = path_ns.ok_or_else(|| ApiError::bad_request("the namespace of the provided object is missing"))?;
    match object::namespace(obj) {
        Some(body_ns) if !body_ns.is_empty() && body_ns != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            object::meta_mut(obj).insert("namespace".into(), Value::String(ns.to_string()));
            Ok(Some(ns.to_string()))
        }
    }
}

/// Checks the body's apiVersion and kind against the path's resource (empty means the path's).
fn check_type(res: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    };
    let api_version = res.api_version();
    let kind_ok = map.get("kind").and_then(Value::as_str).is_none_or(|k| k.is_empty() || k == res.kind);
    let version_ok = map.get("apiVersion").and_then(Value::as_str).is_none_or(|v| v.is_empty() || v == api_version);
    if !kind_ok || !version_ok {
        let got = format!(
            "{}, Kind={}",
            map.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            map.get("kind").and_then(Value::as_str).unwrap_or("")
        );
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({got}) does not match the expected API version ({api_version}, Kind={})",
            res.kind
        )));
    }
    if map.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    map.insert("apiVersion".into(), Value::String(api_version));
    map.insert("kind".into(), Value::String(res.kind.to_string()));
    Ok(())
}
