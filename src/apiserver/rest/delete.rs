//! Delete: preconditions, propagation policy (orphan and foreground become finalizers, as upstream),
//! graceful deletion of scheduled pods, and deletionTimestamp while finalizers remain (for a namespace,
//! also its spec finalizers, with phase Terminating); the object is removed from the store only when
//! nothing holds it.

use serde_json::{json, Value};

use crate::core::registry::ResourceInfo;
use crate::store::{Command, CommandError};

use super::{Rest, WriteContext};
use crate::apiserver::object;
use crate::apiserver::status::{ApiError, ApiResult};

/// metav1.DeleteOptions, as far as the store needs it.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads a DeleteOptions body (and the legacy `orphanDependents`).
    pub fn from_body(body: &Value) -> ApiResult<DeleteOptions> {
        let mut opts = DeleteOptions {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation_policy: body.get("propagationPolicy").and_then(Value::as_str).map(str::to_string),
            precondition_uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
            precondition_resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        if opts.propagation_policy.is_none() {
            if let Some(orphan) = body.get("orphanDependents").and_then(Value::as_bool) {
                opts.propagation_policy = Some(if orphan { "Orphan" } else { "Background" }.to_string());
            }
        }
        opts.validate()?;
        Ok(opts)
    }

    fn validate(&self) -> ApiResult<()> {
        if let Some(p) = &self.propagation_policy {
            if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        }
        if self.grace_period_seconds.is_some_and(|g| g < 0) {
            return Err(ApiError::bad_request("gracePeriodSeconds: Invalid value: must be >= 0"));
        }
        Ok(())
    }
}

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// Removed from the store; the last state.
    Gone(Value),
    /// Marked for deletion (finalizers or a grace period remain); the marked state.
    Pending(Value),
}

const MAX_ATTEMPTS: usize = 16;

impl Rest {
    /// Deletes one object.
    pub async fn delete(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        ctx: &WriteContext,
    ) -> ApiResult<Deleted> {
        let key = object::key(res, ns, name);
        for _ in 0..MAX_ATTEMPTS {
            let record = self.store.get(&key).await?.ok_or_else(|| ApiError::not_found(res, name))?;
            let current = object::decode(&record)?;
            check_preconditions(res, name, &current, opts)?;
            let mut finalizers = object::finalizers(&current);
            match opts.propagation_policy.as_deref() {
                Some("Orphan") => add_once(&mut finalizers, "orphan"),
                Some("Foreground") => add_once(&mut finalizers, "foregroundDeletion"),
                _ => {}
            }
            let grace = self.admission.grace_period(res, &current, opts.grace_period_seconds);
            let namespace = res.group.is_empty() && res.kind == "Namespace";
            let held_by_spec =
                namespace && object::deletion_held(&json!({"kind": "Namespace", "spec": current.get("spec")}));
            if finalizers.is_empty() && grace == 0 && !held_by_spec {
                if ctx.dry_run {
                    return Ok(Deleted::Gone(current));
                }
                let command = Command::Delete { key: key.clone(), expected_revision: record.mod_revision };
                match self.store.apply(command).await? {
                    Ok(gone) => return Ok(Deleted::Gone(object::decode(&gone)?)),
                    Err(CommandError::Conflict { .. }) => continue,
                    Err(CommandError::NotFound) => return Err(ApiError::not_found(res, name)),
                    Err(other) => return Err(ApiError::internal(other)),
                }
            }
            if object::is_terminating(&current) && finalizers == object::finalizers(&current) {
                return Ok(Deleted::Pending(current));
            }
            let mut marked = current.clone();
            let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
            let meta = object::meta_mut(&mut marked);
            if !meta.contains_key("deletionTimestamp") {
                meta.insert("deletionTimestamp".into(), json!(deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                    meta.insert("generation".into(), json!(g + 1));
                }
            }
            if finalizers.is_empty() {
                meta.remove("finalizers");
            } else {
                meta.insert("finalizers".into(), json!(finalizers));
            }
            if namespace {
                // The namespace controller empties it and then removes its spec finalizer.
                marked["status"]["phase"] = json!("Terminating");
            }
            if ctx.dry_run {
                return Ok(Deleted::Pending(marked));
            }
            let command = Command::Update {
                key: key.clone(),
                value: object::encode(&marked)?,
                expected_revision: record.mod_revision,
            };
            match self.store.apply(command).await? {
                Ok(written) => return Ok(Deleted::Pending(object::decode(&written)?)),
                Err(CommandError::Conflict { .. }) => continue,
                Err(CommandError::NotFound) => return Err(ApiError::not_found(res, name)),
                Err(other) => return Err(ApiError::internal(other)),
            }
        }
        Err(ApiError::modified(res, name))
    }

    /// Removes an object whose deletion has begun and whose last finalizer is gone.
    pub(super) async fn finish_deletion(
        &self,
        res: &'static ResourceInfo,
        name: &str,
        key: &str,
        revision: i64,
    ) -> ApiResult<Value> {
        let command = Command::Delete { key: key.to_string(), expected_revision: revision };
        match self.store.apply(command).await? {
            Ok(gone) => object::decode(&gone),
            Err(CommandError::NotFound) => Err(ApiError::not_found(res, name)),
            Err(_) => Err(ApiError::modified(res, name)),
        }
    }
}

fn add_once(finalizers: &mut Vec<String>, f: &str) {
    if !finalizers.iter().any(|x| x == f) {
        finalizers.push(f.to_string());
    }
}

fn check_preconditions(res: &ResourceInfo, name: &str, obj: &Value, opts: &DeleteOptions) -> ApiResult<()> {
    if let Some(uid) = &opts.precondition_uid {
        let actual = object::meta_str(obj, "uid").unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict(
                res,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
            ));
        }
    }
    if let Some(rv) = &opts.precondition_resource_version {
        let actual = object::resource_version(obj).unwrap_or("");
        if rv != actual {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                ),
            ));
        }
    }
    Ok(())
}
