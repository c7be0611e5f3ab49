//! Validation of built-in kinds with upstream's rules and messages: metadata for every kind (names by
//! the kind's naming rule, labels, annotations), then the kind's own required fields and immutable fields.

use serde_json::{json, Value};

use crate::apiserver::object;
use crate::apiserver::status::FieldError;
use crate::core::registry::ResourceInfo;
use crate::core::selector::LabelSelector;
use crate::core::validation::{self, NameRule};

use super::validate_pod;

const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// The naming rule of a kind.
fn name_rule(res: &ResourceInfo) -> NameRule {
    match (res.group, res.kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Metadata rules shared by every kind.
pub fn metadata(res: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = object::name(obj).unwrap_or("");
    if name.is_empty() {
        errors.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        for msg in validation::validate_object_name(name, name_rule(res)) {
            errors.push(FieldError::invalid("metadata.name", &json!(name), msg));
        }
    }
    for (key, value) in object::labels(obj) {
        for msg in validation::is_qualified_name(&key) {
            errors.push(FieldError::invalid("metadata.labels", &json!(key), msg));
        }
        let value = value.as_str().unwrap_or("");
        for msg in validation::is_valid_label_value(value) {
            errors.push(FieldError::invalid("metadata.labels", &json!(value), msg));
        }
    }
    if let Some(annotations) = obj.pointer("/metadata/annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (key, value) in annotations {
            for msg in validation::is_qualified_name(&key.to_ascii_lowercase()) {
                errors.push(FieldError::invalid("metadata.annotations", &json!(key), msg));
            }
            total += key.len() + value.as_str().map_or(0, str::len);
        }
        if total > MAX_ANNOTATIONS_BYTES {
            errors.push(FieldError {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                message: format!("Too long: may not be more than {MAX_ANNOTATIONS_BYTES} bytes"),
            });
        }
    }
    errors
}

/// The kind's own rules; `old` is the stored object on updates.
pub fn kind(res: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match (res.group, res.kind) {
        ("", "Pod") => validate_pod::pod_spec(obj.get("spec"), "spec", &mut errors),
        ("", "PodTemplate") => validate_pod::pod_spec(obj.pointer("/template/spec"), "template.spec", &mut errors),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            workload(obj, true, &mut errors);
            immutable(obj, old, "/spec/selector", "spec.selector", &mut errors);
        }
        ("", "ReplicationController") => workload(obj, false, &mut errors),
        ("batch", "Job") => {
            validate_pod::pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec", &mut errors);
            restart_policy_for_jobs(
                obj.pointer("/spec/template/spec"),
                "spec.template.spec.restartPolicy",
                &mut errors,
            );
            immutable(obj, old, "/spec/selector", "spec.selector", &mut errors);
        }
        ("batch", "CronJob") => {
            let schedule = obj.pointer("/spec/schedule").and_then(Value::as_str).unwrap_or("");
            if schedule.is_empty() {
                errors.push(FieldError::required("spec.schedule", ""));
            } else if schedule.contains("TZ") {
                let detail = "cannot use TZ or CRON_TZ in schedule, use timeZone field instead";
                errors.push(FieldError::invalid("spec.schedule", &json!(schedule), detail));
            } else if let Err(detail) = crate::core::cron::Schedule::parse(schedule) {
                errors.push(FieldError::invalid("spec.schedule", &json!(schedule), detail));
            }
            if let Some(zone) = obj.pointer("/spec/timeZone").and_then(Value::as_str) {
                if jiff::tz::TimeZone::get(zone).is_err() {
                    errors.push(FieldError::invalid("spec.timeZone", &json!(zone), "unknown time zone"));
                }
            }
            let spec = obj.pointer("/spec/jobTemplate/spec/template/spec");
            validate_pod::pod_spec(spec, "spec.jobTemplate.spec.template.spec", &mut errors);
            restart_policy_for_jobs(spec, "spec.jobTemplate.spec.template.spec.restartPolicy", &mut errors);
        }
        ("", "Service") => {
            service(obj, &mut errors);
            if old.and_then(|o| o.pointer("/spec/clusterIP")).is_some_and(|ip| ip.as_str() != Some("")) {
                immutable(obj, old, "/spec/clusterIP", "spec.clusterIP", &mut errors);
            }
        }
        ("", "ConfigMap" | "Secret") => {
            data_keys(obj, &mut errors);
            if old.and_then(|o| o.get("immutable")).and_then(Value::as_bool) == Some(true) {
                for field in ["data", "binaryData", "stringData"] {
                    immutable(obj, old, &format!("/{field}"), field, &mut errors);
                }
            }
        }
        _ => {}
    }
    errors
}

fn immutable(obj: &Value, old: Option<&Value>, pointer: &str, field: &str, errors: &mut Vec<FieldError>) {
    if let Some(old) = old {
        let now = obj.pointer(pointer).cloned().unwrap_or(Value::Null);
        if old.pointer(pointer).cloned().unwrap_or(Value::Null) != now {
            errors.push(FieldError::invalid(field, &now, "field is immutable"));
        }
    }
}

/// Controllers' rules: a selector that matches the template's labels, non-negative replicas.
fn workload(obj: &Value, selector_required: bool, errors: &mut Vec<FieldError>) {
    if obj.pointer("/spec/replicas").and_then(Value::as_i64).is_some_and(|r| r < 0) {
        errors.push(FieldError::invalid(
            "spec.replicas",
            &obj["spec"]["replicas"],
            "must be greater than or equal to 0",
        ));
    }
    let labels = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    match obj.pointer("/spec/selector") {
        None | Some(Value::Null) if selector_required => errors.push(FieldError::required("spec.selector", "")),
        None | Some(Value::Null) => {}
        Some(sel) => {
            let parsed = if selector_required {
                LabelSelector::from_label_selector_json(sel)
            } else {
                // ReplicationControllers select with a plain map.
                LabelSelector::from_label_selector_json(&json!({"matchLabels": sel}))
            };
            match parsed {
                Err(e) => errors.push(FieldError::invalid("spec.selector", sel, e)),
                Ok(s) if s.is_empty() && selector_required => {
                    errors.push(FieldError::invalid("spec.selector", sel, "empty selector is invalid for deployment"))
                }
                Ok(s) if !s.matches(&labels) => errors.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    &Value::Object(labels.clone()),
                    "`selector` does not match template `labels`",
                )),
                Ok(_) => {}
            }
        }
    }
    validate_pod::pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec", errors);
}

fn restart_policy_for_jobs(spec: Option<&Value>, field: &str, errors: &mut Vec<FieldError>) {
    let policy = spec.and_then(|s| s.get("restartPolicy")).cloned().unwrap_or(Value::Null);
    if !matches!(policy.as_str(), Some("OnFailure" | "Never")) {
        errors.push(FieldError::not_supported(field, &policy, &["OnFailure", "Never"]));
    }
}

fn service(obj: &Value, errors: &mut Vec<FieldError>) {
    let kind = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        errors.push(FieldError::not_supported(
            "spec.type",
            &json!(kind),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if ports.is_empty() && kind != "ExternalName" && !headless {
        errors.push(FieldError::required("spec.ports", ""));
    }
    let many = ports.len() > 1;
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errors.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if many && name.is_empty() {
            errors.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
        }
        if !name.is_empty() && !names.insert(name.to_string()) {
            errors.push(FieldError::duplicate(format!("spec.ports[{i}].name"), &json!(name)));
        }
    }
}

fn data_keys(obj: &Value, errors: &mut Vec<FieldError>) {
    for field in ["data", "binaryData", "stringData"] {
        if let Some(map) = obj.get(field).and_then(Value::as_object) {
            for key in map.keys() {
                let ok = !key.is_empty()
                    && key.len() <= 253
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && key != "."
                    && key != "..";
                if !ok {
                    errors.push(FieldError::invalid(
                        field,
                        &json!(key),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    ));
                }
            }
        }
    }
}
