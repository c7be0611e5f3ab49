//! The `pods/eviction` subresource (upstream's EvictionREST): a pod is deleted only if the one
//! PodDisruptionBudget selecting it allows a disruption, which the eviction spends by decrementing
//! `status.disruptionsAllowed` and recording the pod in `status.disruptedPods` before the delete, so two
//! evictions racing cannot both spend the last disruption. Pods already finished, pending or being
//! deleted bypass budgets; a budget that forbids the eviction answers 429 so clients (`kubectl drain`)
//! retry.

use serde_json::{json, Value};

use crate::core::registry::{self, ResourceInfo};
use crate::core::selector::LabelSelector;

use super::object;
use super::rest::{DeleteOptions, ListQuery, Rest, UpdateOptions, WriteContext};
use super::status::{ApiError, ApiResult};

/// Past this many evictions the disruption controller has not yet confirmed, budgets refuse more.
const MAX_DISRUPTED_PODS: usize = 2000;

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn is_ready(pod: &Value) -> bool {
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array);
    conditions.into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Pods whose eviction disrupts nothing more than has already happened.
fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || object::is_terminating(pod)
}

fn too_many_requests(message: String, retry_after: u64) -> ApiError {
    ApiError {
        details: Some(
            json!({"causes": [{"reason": "DisruptionBudget", "message": message}], "retryAfterSeconds": retry_after}),
        ),
        ..ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
    }
}

fn still_processing(budget: &str) -> ApiError {
    too_many_requests(format!("The disruption budget {budget} is still being processed by the server."), 10)
}

fn budget_forbids(name: &str, why: &str) -> ApiError {
    ApiError::forbidden(format!("poddisruptionbudgets.policy {name:?} is forbidden: {why}"))
}

/// Evicts pod `name` as the Eviction `body` asks.
pub async fn evict(
    rest: &Rest,
    pods: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    body: &Value,
    ctx: &WriteContext,
) -> ApiResult<()> {
    if object::name(body) != Some(name) {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let mut options = match body.get("deleteOptions").filter(|o| o.is_object()) {
        Some(options) => DeleteOptions::from_body(options)?,
        None => DeleteOptions::default(),
    };
    let pod = rest.get(pods, ns, name).await?;
    // Set when an unready pod goes without spending a disruption: the budget it was judged against.
    let mut judged_by = None;
    if !can_ignore_budgets(&pod) {
        let budgets = budgets_of(rest, ns, &pod).await?;
        if budgets.len() > 1 {
            return Err(ApiError::new(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(budget) = budgets.first() {
            if !is_ready(&pod) && unhealthy_pod_may_go(budget) {
                // It must be deleted as it was judged, not after becoming ready meanwhile.
                if options.precondition_resource_version.is_none() {
                    options.precondition_resource_version = object::resource_version(&pod).map(str::to_string);
                    judged_by = object::name(budget).map(str::to_string);
                }
            } else {
                spend_disruption(rest, ns, budget, name, ctx).await?;
            }
        }
    }
    match rest.delete(pods, ns, name, &options, ctx).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 && judged_by.is_some() => {
            Err(still_processing(judged_by.as_deref().unwrap_or_default()))
        }
        Err(e) => Err(e),
    }
}

/// A pod that is not ready may go without spending a disruption when the budget is healthy anyway, or
/// its policy says so (unhealthyPodEvictionPolicy).
fn unhealthy_pod_may_go(budget: &Value) -> bool {
    if budget.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow") {
        return true;
    }
    let status = |field: &str| budget.pointer(&format!("/status/{field}")).and_then(Value::as_i64).unwrap_or(0);
    status("currentHealthy") >= status("desiredHealthy") && status("desiredHealthy") > 0
}

/// The budgets in the pod's namespace whose (non-empty, valid) selector matches the pod.
async fn budgets_of(rest: &Rest, ns: Option<&str>, pod: &Value) -> ApiResult<Vec<Value>> {
    let res = budget_resource()?;
    let listed = rest.list(res, ns, &ListQuery::default()).await?.items;
    let labels = object::labels(pod);
    Ok(listed
        .into_iter()
        .filter(|budget| {
            let Some(selector) = budget.pointer("/spec/selector").filter(|s| s.is_object()) else {
                return false;
            };
            LabelSelector::from_label_selector_json(selector)
                .is_ok_and(|s| !s.requirements().is_empty() && s.matches(&labels))
        })
        .collect())
}

fn budget_resource() -> ApiResult<&'static ResourceInfo> {
    registry::find("policy", "v1", "poddisruptionbudgets").ok_or_else(|| ApiError::internal("no PodDisruptionBudgets"))
}

/// Checks the budget allows a disruption and spends it, recording the pod as disrupted; re-reads and
/// re-checks the budget on a conflict.
async fn spend_disruption(
    rest: &Rest,
    ns: Option<&str>,
    budget: &Value,
    pod: &str,
    ctx: &WriteContext,
) -> ApiResult<()> {
    let res = budget_resource()?;
    let name = object::name(budget).unwrap_or("").to_string();
    let mut write = WriteContext { dry_run: ctx.dry_run, ..WriteContext::default() };
    rest.guaranteed_update(res, ns, &name, UpdateOptions::STATUS, &mut write, |mut budget| {
        let (pod, name) = (pod.to_string(), name.clone());
        async move {
            check_budget(&budget, &name)?;
            let status = &mut budget["status"];
            let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0) - 1;
            status["disruptionsAllowed"] = json!(allowed);
            if !status["disruptedPods"].is_object() {
                status["disruptedPods"] = json!({});
            }
            status["disruptedPods"][pod.as_str()] = json!(object::now_rfc3339());
            if allowed == 0 {
                mark_no_disruptions_allowed(status);
            }
            Ok(budget)
        }
    })
    .await
    .map(drop)
}

/// Whether the budget, as the disruption controller last computed it, allows one more disruption.
fn check_budget(budget: &Value, name: &str) -> ApiResult<()> {
    let generation = budget.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let observed = budget.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
    if observed < generation {
        return Err(still_processing(name));
    }
    let status = |field: &str| budget.pointer(&format!("/status/{field}")).and_then(Value::as_i64).unwrap_or(0);
    if status("disruptionsAllowed") < 0 {
        return Err(budget_forbids(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = budget.pointer("/status/disruptedPods").and_then(Value::as_object).map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(budget_forbids(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if status("disruptionsAllowed") == 0 {
        let message = format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status("desiredHealthy"),
            status("currentHealthy")
        );
        return Err(too_many_requests(message, 0));
    }
    Ok(())
}

/// Sets the DisruptionAllowed condition to False once the last allowed disruption is spent.
fn mark_no_disruptions_allowed(status: &mut Value) {
    let condition = json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
        "message": "", "observedGeneration": status["observedGeneration"], "lastTransitionTime": object::now_rfc3339()});
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    match conditions.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(existing) if existing["status"] == "False" => {}
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
    status["conditions"] = json!(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(generation: i64, observed: i64, allowed: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
            "status": {"observedGeneration": observed, "disruptionsAllowed": allowed, "desiredHealthy": 2, "currentHealthy": 2}})
    }

    #[test]
    fn budgets_refuse_as_upstream_does() {
        assert!(check_budget(&budget(1, 1, 1), "web").is_ok());
        let spent = check_budget(&budget(1, 1, 0), "web").unwrap_err();
        assert_eq!(spent.code, 429);
        assert_eq!(
            spent.details.unwrap()["causes"][0]["message"],
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
        assert_eq!(check_budget(&budget(2, 1, 1), "web").unwrap_err().code, 429, "a budget not yet recomputed");
        assert_eq!(check_budget(&budget(1, 1, -1), "web").unwrap_err().code, 403);
    }

    #[test]
    fn unready_pods_go_freely_only_from_a_healthy_budget_or_by_policy() {
        assert!(unhealthy_pod_may_go(&budget(1, 1, 0)));
        let short = json!({"status": {"desiredHealthy": 3, "currentHealthy": 2}});
        assert!(!unhealthy_pod_may_go(&short));
        let always = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}, "status": {"desiredHealthy": 3}});
        assert!(unhealthy_pod_may_go(&always));
        assert!(can_ignore_budgets(&json!({"status": {"phase": "Succeeded"}})));
        assert!(!can_ignore_budgets(&json!({"status": {"phase": "Running"}})));
    }
}
