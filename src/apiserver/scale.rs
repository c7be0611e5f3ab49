//! Subresources that are views of their object: `/scale` (an autoscaling/v1 Scale of spec.replicas) and
//! pods' `/binding` (assigning a pod to a node).

use serde_json::{json, Value};

use crate::core::registry::ResourceInfo;
use crate::core::selector::LabelSelector;

use super::object;
use super::patch::{self, PatchType};
use super::rest::{Rest, UpdateKind, UpdateOptions, WriteContext};
use super::status::{ApiError, ApiResult, FieldError};

/// The Scale view of a scalable object.
pub fn view(res: &ResourceInfo, obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let selector = match res.kind {
        "ReplicationController" => obj.pointer("/spec/selector").map(|s| json!({"matchLabels": s})),
        _ => obj.pointer("/spec/selector").cloned(),
    };
    let selector_text = selector
        .and_then(|s| LabelSelector::from_label_selector_json(&s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": pick("name"), "namespace": pick("namespace"), "uid": pick("uid"),
                     "resourceVersion": pick("resourceVersion"), "creationTimestamp": pick("creationTimestamp")},
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": selector_text},
    })
}

fn replicas_of(res: &ResourceInfo, name: &str, scale: &Value) -> ApiResult<i64> {
    match scale.pointer("/spec/replicas") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|r| r >= 0) => Ok(n.as_i64().unwrap_or(0)),
        None | Some(Value::Null) => Ok(0),
        Some(other) => Err(ApiError::invalid(
            res,
            name,
            vec![FieldError::invalid("spec.replicas", other, "must be greater than or equal to 0")],
        )),
    }
}

/// PUT `/scale`: writes spec.replicas from a Scale, honouring its resourceVersion if set.
pub async fn update(
    rest: &Rest,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    scale: &Value,
    ctx: &mut WriteContext,
) -> ApiResult<Value> {
    let replicas = replicas_of(res, name, scale)?;
    let pinned = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let written = rest
        .guaranteed_update(
            res,
            ns,
            name,
            UpdateOptions { pinned: pinned.is_some(), kind: UpdateKind::Main },
            ctx,
            |mut current| {
                let pinned = pinned.clone();
                async move {
                    if let Some(rv) = pinned {
                        object::meta_mut(&mut current).insert("resourceVersion".into(), json!(rv));
                    }
                    if let Some(spec) = current.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.insert("replicas".into(), json!(replicas));
                    }
                    Ok(current)
                }
            },
        )
        .await?;
    Ok(view(res, &written))
}

/// PATCH `/scale`: the patch applies to the Scale view.
pub async fn patch(
    rest: &Rest,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    kind: PatchType,
    body: &Value,
    ctx: &mut WriteContext,
) -> ApiResult<Value> {
    let current = view(res, &rest.get(res, ns, name).await?);
    let scale_res = ScaleKind::resource();
    let patched =
        patch::apply(scale_res, if kind == PatchType::Strategic { PatchType::Merge } else { kind }, &current, body)?;
    update(rest, res, ns, name, &patched, ctx).await
}

/// Scale has no registry entry of its own; patches treat it as a plain object.
struct ScaleKind;

impl ScaleKind {
    fn resource() -> &'static ResourceInfo {
        static SCALE: ResourceInfo = ResourceInfo {
            group: "autoscaling",
            version: "v1",
            kind: "Scale",
            plural: "scale",
            namespaced: true,
            short_names: &[],
            categories: &[],
            subresources: &[],
            verbs: crate::core::registry::ALL_VERBS,
        };
        &SCALE
    }
}

/// POST `pods/<name>/binding`: assigns the pod to the target node once.
pub async fn bind(
    rest: &Rest,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    ctx: &mut WriteContext,
) -> ApiResult<()> {
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(res, name, vec![FieldError::required("target.name", "")]));
    }
    let expected_uid = binding.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    rest.guaranteed_update(res, ns, name, UpdateOptions::WHOLE, ctx, |mut pod| {
        let (node, expected_uid) = (node.clone(), expected_uid.clone());
        async move {
            let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
            if !expected_uid.is_empty() && uid != expected_uid {
                let message = format!("Precondition failed: UID in precondition: {expected_uid}, UID in object meta: {uid}");
                return Err(ApiError::conflict(res, name, &message));
            }
            let assigned = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
            if !assigned.is_empty() {
                return Err(ApiError::conflict(
                    res,
                    name,
                    &format!("pod {name} is already assigned to node {assigned:?}"),
                ));
            }
            if object::is_terminating(&pod) {
                return Err(ApiError::conflict(
                    res,
                    name,
                    &format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            pod["spec"]["nodeName"] = json!(node);
            let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()});
            let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> =
                conditions.into_iter().filter(|c| c.get("type") != Some(&json!("PodScheduled"))).collect();
            conditions.push(condition);
            pod["status"]["conditions"] = json!(conditions);
            Ok(pod)
        }
    })
    .await?;
    Ok(())
}
