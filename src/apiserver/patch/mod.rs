//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch for built-in
//! kinds, and apply patches (`application/apply-patch+yaml`). Each turns the current object and the
//! patch into the desired object; the REST layer then writes it like any update.

mod fieldset;
pub mod managed;
mod strategic;
mod strategic_meta;

use serde_json::Value;

use crate::core::registry::ResourceInfo;

use super::status::{ApiError, ApiResult};

/// The patch types tug accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// From the request's Content-Type.
    pub fn from_content_type(content_type: &str) -> ApiResult<PatchType> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {other:?}"),
            )),
        }
    }
}

/// Applies `patch` of `kind` to `current`.
pub fn apply(res: &ResourceInfo, kind: PatchType, current: &Value, patch: &Value) -> ApiResult<Value> {
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::bad_request(format!("the server rejected our request due to an error in our request: {e}"))
            })?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            strategic::strategic_merge(current, patch, res.group, res.version, res.kind).map_err(|e| match e {
                strategic::StrategicMergeError::UnsupportedKind { .. } => {
                    ApiError::new(415, "UnsupportedMediaType", "strategic merge patch format is not supported")
                }
                other => ApiError::bad_request(other.to_string()),
            })
        }
        PatchType::Apply => {
            // The applied configuration is merged with strategic-merge rules where the kind has them.
            if !patch.is_object() {
                return Err(ApiError::bad_request("an apply patch must be an object"));
            }
            match strategic::strategic_merge(current, patch, res.group, res.version, res.kind) {
                Ok(v) => Ok(v),
                Err(strategic::StrategicMergeError::UnsupportedKind { .. }) => {
                    let mut doc = current.clone();
                    json_patch::merge(&mut doc, patch);
                    Ok(doc)
                }
                Err(other) => Err(ApiError::bad_request(other.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry;
    use serde_json::json;

    #[test]
    fn the_three_patch_types() {
        let res = registry::find("apps", "v1", "deployments").expect("deployments");
        let current = json!({"metadata": {"name": "d", "labels": {"a": "1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}}}});
        let json_ops = json!([{"op": "replace", "path": "/metadata/labels/a", "value": "2"}]);
        assert_eq!(apply(res, PatchType::Json, &current, &json_ops).expect("json")["metadata"]["labels"]["a"], "2");
        let merge = json!({"metadata": {"labels": {"a": null, "b": "3"}}});
        assert_eq!(
            apply(res, PatchType::Merge, &current, &merge).expect("merge")["metadata"]["labels"],
            json!({"b": "3"})
        );
        let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "y:2"}]}}}});
        let out = apply(res, PatchType::Strategic, &current, &smp).expect("strategic");
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["image"], "x:1");
        assert_eq!(out["spec"]["template"]["spec"]["containers"][1]["image"], "y:2");
        let bad = json!([{"op": "remove", "path": "/nope"}]);
        assert_eq!(apply(res, PatchType::Json, &current, &bad).unwrap_err().code, 422);
    }
}
