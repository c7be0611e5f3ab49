//! Pod spec validation: containers present, named as DNS labels and unique, images set, restart policy,
//! ports in range.

use serde_json::{json, Value};

use crate::apiserver::status::FieldError;
use crate::core::{quantity, validation};

/// Validates the pod spec `spec` found at `field`.
pub fn pod_spec(spec: Option<&Value>, field: &str, errors: &mut Vec<FieldError>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        errors.push(FieldError::required(field, ""));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
    if containers.is_empty() {
        errors.push(FieldError::required(format!("{field}.containers"), ""));
    }
    let mut names = std::collections::BTreeSet::new();
    for list in ["initContainers", "containers"] {
        let items = spec.get(list).and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, c) in items.iter().enumerate() {
            let at = format!("{field}.{list}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                errors.push(FieldError::required(format!("{at}.name"), ""));
            } else {
                for msg in validation::is_dns1123_label(name) {
                    errors.push(FieldError::invalid(format!("{at}.name"), &json!(name), msg));
                }
                if !names.insert(name.to_string()) {
                    errors.push(FieldError::duplicate(format!("{at}.name"), &json!(name)));
                }
            }
            if c.get("image").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
                errors.push(FieldError::required(format!("{at}.image"), ""));
            }
            resources(c.get("resources"), &at, errors);
            for (j, p) in c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default().iter().enumerate() {
                let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    errors.push(FieldError::invalid(
                        format!("{at}.ports[{j}].containerPort"),
                        &json!(port),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
    let policy = spec.get("restartPolicy").cloned().unwrap_or(Value::Null);
    if !matches!(policy.as_str(), Some("Always" | "OnFailure" | "Never")) {
        errors.push(FieldError::not_supported(
            format!("{field}.restartPolicy"),
            &policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
}

/// Requests and limits must be quantities, and not negative.
fn resources(resources: Option<&Value>, container: &str, errors: &mut Vec<FieldError>) {
    for amounts in ["requests", "limits"] {
        let Some(map) = resources.and_then(|r| r.get(amounts)).and_then(Value::as_object) else {
            continue;
        };
        for (name, amount) in map {
            let field = format!("{container}.resources.{amounts}[{name}]");
            match amount.as_str().map(quantity::parse_milli) {
                Some(Ok(milli)) if milli < 0 => {
                    errors.push(FieldError::invalid(field, amount, "must be greater than or equal to 0"))
                }
                Some(Ok(_)) => {}
                Some(Err(message)) => errors.push(FieldError::invalid(field, amount, &message)),
                None => errors.push(FieldError::invalid(field, amount, "must be a quantity string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_missing_and_bad_containers() {
        let mut errors = Vec::new();
        let spec = json!({"restartPolicy": "Always", "containers": [{"name": "Bad_Name"}, {"name": "ok", "image": "x"}, {"name": "ok", "image": "y"}]});
        pod_spec(Some(&spec), "spec", &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.containers[0].name", "spec.containers[0].image", "spec.containers[2].name"]);
        let mut errors = Vec::new();
        pod_spec(Some(&json!({"restartPolicy": "Sometimes"})), "spec", &mut errors);
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn refuses_malformed_and_negative_quantities() {
        let mut errors = Vec::new();
        let resources = json!({"requests": {"cpu": "1x", "memory": "-1Gi"}, "limits": {"cpu": "2"}});
        let spec =
            json!({"restartPolicy": "Always", "containers": [{"name": "c", "image": "x", "resources": resources}]});
        pod_spec(Some(&spec), "spec", &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.containers[0].resources.requests[cpu]", "spec.containers[0].resources.requests[memory]"]
        );
    }
}
