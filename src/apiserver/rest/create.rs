//! Create: type and namespace checks, generateName, the server-set metadata (uid, creationTimestamp,
//! generation), per-kind admission, then one Create command.

use serde_json::{json, Value};

use crate::core::registry::ResourceInfo;
use crate::store::{Command, CommandError};

use super::{check_type, reconcile_namespace, Rest, WriteContext};
use crate::apiserver::object::{self, Written};
use crate::apiserver::status::{ApiError, ApiResult, FieldError};

/// Upstream's alphabet for generated name suffixes (no vowels, no confusable digits).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five random characters for `generateName`.
pub fn random_suffix() -> String {
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char)
        .collect()
}

impl Rest {
    /// Creates `obj` in `path_ns`.
    pub async fn create(
        &self,
        res: &'static ResourceInfo,
        path_ns: Option<&str>,
        mut obj: Value,
        ctx: &mut WriteContext,
    ) -> ApiResult<Written> {
        check_type(res, &mut obj)?;
        let ns = reconcile_namespace(res, path_ns, &mut obj)?;
        if object::resource_version(&obj).is_some() {
            return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
        }
        let name = assign_name(res, &mut obj)?;
        stamp_new_metadata(res, &mut obj);
        if let Some(ns) = &ns {
            self.check_namespace(ns, true).await?;
            if res.group.is_empty() && res.kind == "Pod" {
                crate::apiserver::tokens::admission::admit_pod(self, ns, &name, &mut obj).await?;
            }
        }
        self.admission.admit(res, &mut obj, None, ctx)?;
        ctx.track(res, None, &mut obj, None);
        let _allocation = self.allocate(res, &mut obj, None).await?;
        if ctx.dry_run {
            return Ok(Written::unstored(obj));
        }
        let key = object::key(res, ns.as_deref(), &name);
        let value = object::encode(&obj)?;
        match self.store.apply(Command::Create { key, value }).await? {
            Ok(record) => Ok(Written::stored(obj, &record.value, record.mod_revision)),
            Err(CommandError::AlreadyExists { .. }) => Err(ApiError::already_exists(res, &name)),
            Err(other) => Err(ApiError::internal(other)),
        }
    }
}

/// The object's name, generated from `generateName` when unset.
fn assign_name(res: &ResourceInfo, obj: &mut Value) -> ApiResult<String> {
    let meta = object::meta_mut(obj);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if !name.is_empty() {
        return Ok(name);
    }
    let prefix = meta.get("generateName").and_then(Value::as_str).unwrap_or("").to_string();
    if prefix.is_empty() {
        return Err(ApiError::invalid(
            res,
            "",
            vec![FieldError::required("metadata.name", "name or generateName is required")],
        ));
    }
    // Upstream truncates the prefix so that prefix + suffix fits 63 characters.
    let base: String = prefix.chars().take(58).collect();
    let name = format!("{base}{}", random_suffix());
    meta.insert("name".into(), Value::String(name.clone()));
    Ok(name)
}

/// Sets the metadata only the server may set on a new object.
fn stamp_new_metadata(res: &ResourceInfo, obj: &mut Value) {
    let tracks_generation = crate::apiserver::admission::tracks_generation(res);
    let meta = object::meta_mut(obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
    for field in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(field);
    }
    if tracks_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_use_the_upstream_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
    }
}
