//! Server-side apply (`application/apply-patch+yaml`): creates the object from the applied configuration
//! when it does not exist, otherwise merges it into the live object under field ownership rules
//! (`patch::managed`), retrying on write conflicts like any update.

use http::StatusCode;
use serde_json::{json, Value};

use crate::core::registry::ResourceInfo;

use super::object;
use super::patch::{self, managed, PatchType};
use super::rest::{Rest, UpdateOptions, WriteContext};
use super::status::{ApiError, ApiResult};

/// Applies `applied` to `ns/name` as the request's field manager.
pub async fn server_side_apply(
    rest: &Rest,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    mut applied: Value,
    ctx: &mut WriteContext,
) -> ApiResult<(Value, StatusCode)> {
    let manager = ctx.field_manager.clone().unwrap_or_default();
    if !applied.is_object() {
        return Err(ApiError::bad_request("an apply patch must be an object"));
    }
    if object::name(&applied).is_some_and(|n| n != name) {
        return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
    }
    object::meta_mut(&mut applied).insert("name".into(), json!(name));
    if applied.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    ctx.applied = true;
    let force = ctx.force;
    match rest.get(res, ns, name).await {
        Err(e) if e.code == 404 => {
            let now = object::now_rfc3339();
            let obj = managed::apply(res, &json!({}), &applied, applied.clone(), &manager, force, &now)?;
            Ok((rest.create(res, ns, obj, ctx).await?.object, StatusCode::CREATED))
        }
        Err(e) => Err(e),
        Ok(_) => {
            let written = rest
                .guaranteed_update(res, ns, name, UpdateOptions::MAIN, ctx, |current| {
                    let result = patch::apply(res, PatchType::Apply, &current, &applied).and_then(|merged| {
                        managed::apply(res, &current, &applied, merged, &manager, force, &object::now_rfc3339())
                    });
                    async move { result }
                })
                .await?;
            Ok((written, StatusCode::OK))
        }
    }
}
