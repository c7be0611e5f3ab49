//! Update and patch: read, compute the new object, and write it with the read revision as precondition,
//! retrying on conflicts unless the client pinned a resourceVersion (then 409). Carries over what only
//! the server sets, keeps status and spec apart by subresource, bumps generation on spec changes, skips
//! no-op writes, and finishes a deletion when the last finalizer goes.

use std::future::Future;

use serde_json::Value;

use crate::core::registry::ResourceInfo;
use crate::store::{Command, CommandError};

use super::{check_type, reconcile_namespace, Rest, WriteContext};
use crate::apiserver::object;
use crate::apiserver::status::{ApiError, ApiResult};

/// Which part of the object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// The main resource: everything but status (for kinds with a status subresource).
    Main,
    /// `/status`: status only.
    Status,
    /// Spec and status in one write, for the server's own subresources (`pods/binding`).
    Whole,
    /// `namespaces/<name>/finalize`: spec.finalizers only.
    Finalize,
}

/// How a guaranteed update treats conflicts and which part of the object it may change.
#[derive(Debug, Clone, Copy)]
pub struct UpdateOptions {
    /// The client named a resourceVersion: a conflict is a 409 rather than a retry.
    pub pinned: bool,
    pub kind: UpdateKind,
}

impl UpdateOptions {
    /// Retry on conflicts, change the main resource.
    pub const MAIN: UpdateOptions = UpdateOptions { pinned: false, kind: UpdateKind::Main };
    /// Retry on conflicts, change status only.
    pub const STATUS: UpdateOptions = UpdateOptions { pinned: false, kind: UpdateKind::Status };
    /// Retry on conflicts, change spec and status together.
    pub const WHOLE: UpdateOptions = UpdateOptions { pinned: false, kind: UpdateKind::Whole };
}

/// Metadata only the server sets; carried over from the stored object on every update.
const SERVER_META: &[&str] =
    &["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"];

const MAX_ATTEMPTS: usize = 16;

impl Rest {
    /// PUT: replaces the object (creating it where the kind allows create-on-update).
    pub async fn update(
        &self,
        res: &'static ResourceInfo,
        path_ns: Option<&str>,
        name: &str,
        mut obj: Value,
        kind: UpdateKind,
        ctx: &mut WriteContext,
    ) -> ApiResult<(Value, bool)> {
        check_type(res, &mut obj)?;
        reconcile_namespace(res, path_ns, &mut obj)?;
        if object::name(&obj).is_some_and(|n| n != name) {
            return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
        }
        object::meta_mut(&mut obj).insert("name".into(), Value::String(name.to_string()));
        // A resourceVersion in the body pins the write: guaranteed_update compares it with the stored one.
        let pinned = object::resource_version(&obj).map(object::parse_resource_version).transpose()?.is_some();
        let desired = obj.clone();
        let updated = self
            .guaranteed_update(res, path_ns, name, UpdateOptions { pinned, kind }, ctx, move |_current| {
                let desired = desired.clone();
                async move { Ok(desired) }
            })
            .await;
        match updated {
            Err(e)
                if e.code == 404
                    && kind == UpdateKind::Main
                    && crate::apiserver::admission::allows_create_on_update(res) =>
            {
                object::meta_mut(&mut obj).remove("resourceVersion");
                Ok((self.create(res, path_ns, obj, ctx).await?.object, true))
            }
            other => other.map(|u| (u, false)),
        }
    }

    /// Reads the object, lets `mutate` compute the desired object from it, applies the update rules and
    /// writes with the read revision as precondition. Retries on conflict unless `opts.pinned`.
    pub async fn guaranteed_update<F, Fut>(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: UpdateOptions,
        ctx: &mut WriteContext,
        mut mutate: F,
    ) -> ApiResult<Value>
    where
        F: FnMut(Value) -> Fut,
        Fut: Future<Output = ApiResult<Value>>,
    {
        let key = object::key(res, ns, name);
        for _ in 0..MAX_ATTEMPTS {
            let record = self.store.get(&key).await?.ok_or_else(|| ApiError::not_found(res, name))?;
            let current = object::decode(&record)?;
            let mut desired = mutate(current.clone()).await?;
            check_type(res, &mut desired)?;
            reconcile_namespace(res, ns, &mut desired)?;
            object::meta_mut(&mut desired).insert("name".into(), Value::String(name.to_string()));
            if let Some(rv) = object::resource_version(&desired) {
                if object::parse_resource_version(rv)? != record.mod_revision {
                    return Err(ApiError::modified(res, name));
                }
            }
            let mut next = self.prepare_update(res, &current, desired, opts.kind);
            self.admission.admit(res, &mut next, Some(&current), ctx)?;
            let subresource = match opts.kind {
                UpdateKind::Status => Some("status"),
                UpdateKind::Finalize => Some("finalize"),
                _ => None,
            };
            ctx.track(res, Some(&current), &mut next, subresource);
            let _allocation = self.allocate(res, &mut next, Some(&current)).await?;
            if unchanged(&current, &next) || ctx.dry_run {
                return Ok(next);
            }
            if object::is_terminating(&next) && !object::deletion_held(&next) {
                return self.finish_deletion(res, name, &key, record.mod_revision).await;
            }
            let value = object::encode(&next)?;
            let command = Command::Update { key: key.clone(), value, expected_revision: record.mod_revision };
            match self.store.apply(command).await? {
                Ok(written) => return Ok(object::with_revision(next, written.mod_revision)),
                Err(CommandError::Conflict { .. }) if !opts.pinned => continue,
                Err(CommandError::Conflict { .. }) => return Err(ApiError::modified(res, name)),
                Err(CommandError::NotFound) => return Err(ApiError::not_found(res, name)),
                Err(other) => return Err(ApiError::internal(other)),
            }
        }
        Err(ApiError::modified(res, name))
    }

    /// Applies upstream's update rules to `desired` given `current`.
    fn prepare_update(&self, res: &ResourceInfo, current: &Value, mut desired: Value, kind: UpdateKind) -> Value {
        let has_status = res.has_subresource(crate::core::registry::Subresource::Status);
        if kind == UpdateKind::Status {
            // A status write changes status only; everything else stays as stored.
            let status = desired.get("status").cloned();
            desired = current.clone();
            match status {
                Some(s) => desired["status"] = s,
                None => {
                    if let Some(m) = desired.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            return desired;
        }
        if kind == UpdateKind::Finalize {
            // Only the namespace finalizers change.
            let finalizers = desired.pointer("/spec/finalizers").cloned();
            desired = current.clone();
            match finalizers {
                Some(f) => desired["spec"]["finalizers"] = f,
                None => {
                    if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("finalizers");
                    }
                }
            }
            return desired;
        }
        if res.kind == "Namespace" && res.group.is_empty() && kind == UpdateKind::Main {
            // spec.finalizers change through /finalize alone (upstream's namespace strategy).
            match current.pointer("/spec/finalizers") {
                Some(f) => desired["spec"]["finalizers"] = f.clone(),
                None => {
                    if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("finalizers");
                    }
                }
            }
        }
        if has_status && kind == UpdateKind::Main {
            match current.get("status") {
                Some(s) => desired["status"] = s.clone(),
                None => {
                    if let Some(m) = desired.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        let current_meta = current.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        let meta = object::meta_mut(&mut desired);
        for field in SERVER_META {
            match current_meta.get(*field) {
                Some(v) => meta.insert((*field).to_string(), v.clone()),
                None => meta.remove(*field),
            };
        }
        if crate::apiserver::admission::tracks_generation(res)
            && object::spec_part(current) != object::spec_part(&desired)
        {
            let generation = current_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            object::meta_mut(&mut desired).insert("generation".into(), Value::from(generation));
        }
        desired
    }
}

/// Whether a write would change nothing (resourceVersion aside).
fn unchanged(current: &Value, next: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(current) == strip(next)
}
