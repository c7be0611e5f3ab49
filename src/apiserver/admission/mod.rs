//! Per-kind rules applied to every write before it reaches the store, in upstream's order: decode
//! through the typed model (unknown fields per `fieldValidation`), default, then validate (metadata
//! rules for every kind, then the kind's own rules). Pure: no store access.

mod defaults;
mod defaults_pod;
mod typed;
mod validate;
mod validate_pod;

use serde_json::Value;

use crate::core::registry::ResourceInfo;

use super::object;
use super::rest::{FieldValidation, WriteContext};
use super::status::{ApiError, ApiResult};

/// The admission chain of built-in kinds.
#[derive(Debug, Clone, Default)]
pub struct Admission;

/// Kinds whose metadata.generation tracks spec changes.
pub fn tracks_generation(res: &ResourceInfo) -> bool {
    matches!(
        (res.group, res.kind),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job" | "CronJob")
            | ("", "ReplicationController")
            | ("autoscaling", "HorizontalPodAutoscaler")
            | ("policy", "PodDisruptionBudget")
            | ("networking.k8s.io", "Ingress" | "NetworkPolicy")
    )
}

/// Kinds that a PUT may create (upstream's AllowCreateOnUpdate).
pub fn allows_create_on_update(res: &ResourceInfo) -> bool {
    matches!(
        (res.group, res.kind),
        ("", "Endpoints" | "Event") | ("coordination.k8s.io", "Lease") | ("events.k8s.io", "Event")
    )
}

impl Admission {
    /// Normalizes, defaults and validates `obj` (a create when `old` is None). Unknown fields become
    /// warnings or errors in `ctx` as `fieldValidation` asks.
    pub fn admit(
        &self,
        res: &ResourceInfo,
        obj: &mut Value,
        old: Option<&Value>,
        ctx: &mut WriteContext,
    ) -> ApiResult<()> {
        let (normalized, unknown) = typed::normalize(res, std::mem::take(obj)).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: {e}",
                res.kind, res.version, res.kind
            ))
        })?;
        match ctx.field_validation {
            FieldValidation::Strict if !unknown.is_empty() => {
                let list = unknown.iter().map(|f| format!("unknown field {f:?}")).collect::<Vec<_>>().join(", ");
                return Err(ApiError::bad_request(format!("strict decoding error: {list}")));
            }
            FieldValidation::Warn => {
                // A retried write (conflict) is admitted again: warn once.
                for warning in unknown.iter().map(|f| format!("unknown field {f:?}")) {
                    if !ctx.warnings.contains(&warning) {
                        ctx.warnings.push(warning);
                    }
                }
            }
            _ => {}
        }
        *obj = normalized;
        if old.is_none() {
            defaults::on_create(res, obj);
        }
        defaults::apply(res, obj);
        let mut errors = validate::metadata(res, obj);
        errors.extend(validate::kind(res, obj, old));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(res, object::name(obj).unwrap_or(""), errors))
        }
    }

    /// The grace period a delete of `obj` gets: pods on a node get their termination grace period (or
    /// the requested one); everything else, and pods not yet scheduled or already finished, go at once.
    pub fn grace_period(&self, res: &ResourceInfo, obj: &Value, requested: Option<i64>) -> i64 {
        if !(res.group.is_empty() && res.kind == "Pod") {
            return 0;
        }
        let scheduled = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let finished = matches!(obj.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        if !scheduled || finished {
            return 0;
        }
        requested
            .or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
            .unwrap_or(30)
            .max(0)
    }
}
