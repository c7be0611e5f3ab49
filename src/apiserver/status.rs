//! API errors as metav1.Status: the code, reason and message upstream gives for each failure, naming the
//! resource, object and field concerned.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Value};

use crate::core::registry::ResourceInfo;

/// One invalid field, as a StatusCause.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueDuplicate`,
    /// `FieldValueForbidden`, `FieldValueTooLong`.
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// `field: Invalid value: <value>: <detail>`
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl std::fmt::Display) -> FieldError {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", render_value(value)),
        }
    }

    /// `field: Required value`
    pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
        let message =
            if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        FieldError { reason: "FieldValueRequired", field: field.into(), message }
    }

    /// `field: Unsupported value: "x": supported values: "a", "b"`
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> FieldError {
        let list = supported.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {}: supported values: {list}", render_value(value)),
        }
    }

    /// `field: Forbidden: <detail>`
    pub fn forbidden(field: impl Into<String>, detail: impl std::fmt::Display) -> FieldError {
        FieldError { reason: "FieldValueForbidden", field: field.into(), message: format!("Forbidden: {detail}") }
    }

    /// `field: Duplicate value: <value>`
    pub fn duplicate(field: impl Into<String>, value: &Value) -> FieldError {
        FieldError {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", render_value(value)),
        }
    }
}

/// Values print as Go's %#v-like rendering upstream uses: strings quoted, numbers bare.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// An API error, rendered as a metav1.Status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

fn details(resource: &ResourceInfo, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": resource.plural});
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d
}

/// `configmaps` or `deployments.apps`, as upstream names a resource in messages.
fn qualified(resource: &ResourceInfo) -> String {
    if resource.group.is_empty() {
        resource.plural.to_string()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn not_found(resource: &ResourceInfo, name: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(404, "NotFound", format!("{} {name:?} not found", qualified(resource)))
        }
    }

    pub fn already_exists(resource: &ResourceInfo, name: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(409, "AlreadyExists", format!("{} {name:?} already exists", qualified(resource)))
        }
    }

    pub fn conflict(resource: &ResourceInfo, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(resource)),
            )
        }
    }

    /// The optimistic-concurrency conflict.
    pub fn modified(resource: &ResourceInfo, name: &str) -> ApiError {
        ApiError::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error.
    pub fn invalid(resource: &ResourceInfo, name: &str, errors: Vec<FieldError>) -> ApiError {
        let summary = if errors.len() == 1 {
            format!("{}: {}", errors[0].field, errors[0].message)
        } else {
            format!("[{}]", errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join(", "))
        };
        let causes: Vec<Value> =
            errors.iter().map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field})).collect();
        let mut d = json!({"name": name, "kind": resource.kind, "causes": causes});
        if !resource.group.is_empty() {
            d["group"] = json!(resource.group);
        }
        ApiError {
            details: Some(d),
            ..ApiError::new(422, "Invalid", format!("{} {name:?} is invalid: {summary}", resource.kind))
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", message)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type:?}"))
    }

    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {message}"))
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    /// The metav1.Status object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        match e {
            crate::store::StoreError::Compacted { requested, compacted } => {
                ApiError::gone(format!("too old resource version: {requested} ({compacted})"))
            }
            crate::store::StoreError::FutureRevision { requested, current } => ApiError {
                details: Some(
                    json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
                ),
                ..ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"))
            },
            // No leader reachable (an election, a partition): clients retry, as with etcd's "leader changed".
            unavailable @ crate::store::StoreError::Unavailable(_) => ApiError {
                details: Some(json!({"retryAfterSeconds": 1})),
                ..ApiError::new(503, "ServiceUnavailable", unavailable.to_string())
            },
            // Upstream answers a write whose commit it stopped waiting for with 504 (etcd's "request timed out").
            indeterminate @ crate::store::StoreError::Indeterminate(_) => ApiError::timeout(indeterminate.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (code, [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry;

    #[test]
    fn messages_match_upstream() {
        let cm = registry::find("", "v1", "configmaps").expect("configmaps");
        let deploy = registry::find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(ApiError::not_found(cm, "x").message, "configmaps \"x\" not found");
        assert_eq!(ApiError::already_exists(deploy, "web").message, "deployments.apps \"web\" already exists");
        assert_eq!(
            ApiError::modified(cm, "x").message,
            "Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let err = ApiError::invalid(
            cm,
            "Bad",
            vec![FieldError::invalid("metadata.name", &json!("Bad"), "must be lower case")],
        );
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "ConfigMap \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\": must be lower case"
        );
        assert_eq!(err.to_status()["details"]["causes"][0]["field"], "metadata.name");
    }
}
