//! metadata.managedFields: who owns which fields. Server-side apply merges an applied configuration,
//! refuses (409) to change fields another manager owns with a different value unless forced, and removes
//! fields a manager stopped applying when nobody else owns them. Every other write records the fields it
//! changed under its manager with operation Update, taking them from other managers.

use serde_json::{json, Value};

use crate::apiserver::status::ApiError;
use crate::core::registry::ResourceInfo;

use super::fieldset::{self, FieldPath, FieldSet};

/// One managedFields entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager, "operation": self.operation, "apiVersion": self.api_version,
            "time": self.time, "fieldsType": "FieldsV1", "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(sub) = &self.subresource {
            v["subresource"] = json!(sub);
        }
        v
    }

    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.as_deref() == subresource
    }
}

fn entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return vec![];
    };
    list.iter()
        .filter_map(|e| {
            Some(Entry {
                manager: e.get("manager")?.as_str()?.to_string(),
                operation: e.get("operation").and_then(Value::as_str).unwrap_or("Update").to_string(),
                api_version: e.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string(),
                time: e.get("time").and_then(Value::as_str).unwrap_or("").to_string(),
                subresource: e.get("subresource").and_then(Value::as_str).map(str::to_string),
                fields: FieldSet::from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
            })
        })
        .collect()
}

fn store_entries(obj: &mut Value, list: &[Entry]) {
    let kept: Vec<Value> = list.iter().filter(|e| !e.fields.is_empty()).map(Entry::to_json).collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if kept.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(kept));
        }
    }
}

/// Server-maintained fields nobody owns.
const SYSTEM_META: &[&str] = &[
    "f:name",
    "f:namespace",
    "f:uid",
    "f:resourceVersion",
    "f:generation",
    "f:creationTimestamp",
    "f:managedFields",
    "f:deletionTimestamp",
    "f:deletionGracePeriodSeconds",
    "f:selfLink",
];

/// Whether a path (or a prefix of one) can be owned by any write: never apiVersion, kind or
/// server-maintained metadata.
fn ownable(path: &[String]) -> bool {
    let first = path.first().map(String::as_str).unwrap_or("");
    if matches!(first, "f:apiVersion" | "f:kind") {
        return false;
    }
    !(first == "f:metadata" && path.get(1).is_some_and(|p| SYSTEM_META.contains(&p.as_str())))
}

/// Whether a path (or a prefix of one) is tracked for writes to `subresource` (None = the main
/// resource).
fn tracked(path: &[String], subresource: Option<&str>) -> bool {
    let first = path.first().map(String::as_str).unwrap_or("");
    ownable(path)
        && match subresource {
            Some("status") => first == "f:status",
            _ => first != "f:status",
        }
}

fn owned_fields(res: &ResourceInfo, obj: &Value, subresource: Option<&str>) -> FieldSet {
    FieldSet::of(obj, res.group, res.version, res.kind, &|p| tracked(p, subresource))
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    v
}

/// Applies `applied` as `manager` onto `live` (an empty object for a create), given the merge the patch
/// layer computed (`merged`). Returns the object to write, with managedFields updated.
pub fn apply(
    res: &ResourceInfo,
    live: &Value,
    applied: &Value,
    mut merged: Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    let applied_set = owned_fields(res, applied, None);
    let mut list = entries(live);
    let mut conflicts: Vec<(String, String, FieldPath)> = Vec::new();
    for entry in list.iter().filter(|e| e.manager != manager && e.subresource.is_none()) {
        for path in applied_set.intersection(&entry.fields).0 {
            // A list item's `.` is its existence, which both sides agree on; its fields are compared.
            let existence = path.last().is_some_and(|p| p == ".");
            if !existence && fieldset::value_at(live, &path) != fieldset::value_at(applied, &path) {
                conflicts.push((entry.manager.clone(), entry.api_version.clone(), path));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(res, applied, &conflicts));
    }
    // Forcing takes the conflicting fields; fields applied with the value they already have stay shared.
    for (owner, _, path) in &conflicts {
        for entry in list.iter_mut().filter(|e| &e.manager == owner) {
            entry.fields.0.remove(path);
        }
    }
    let previous = list.iter().find(|e| e.is(manager, "Apply", None)).map(|e| e.fields.clone()).unwrap_or_default();
    for path in previous.difference(&applied_set).0 {
        let owned_elsewhere = list.iter().any(|e| !e.is(manager, "Apply", None) && e.fields.0.contains(&path));
        if !owned_elsewhere {
            fieldset::remove_at(&mut merged, &path);
        }
    }
    let unchanged = without_managed_fields(&merged) == without_managed_fields(live) && previous == applied_set;
    if unchanged {
        store_entries(&mut merged, &list);
        return Ok(merged);
    }
    let entry = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: res.api_version(),
        time: now.to_string(),
        subresource: None,
        fields: applied_set,
    };
    match list.iter_mut().find(|e| e.is(manager, "Apply", None)) {
        Some(existing) => *existing = entry,
        None => list.push(entry),
    }
    store_entries(&mut merged, &list);
    Ok(merged)
}

fn conflict_error(res: &ResourceInfo, applied: &Value, conflicts: &[(String, String, FieldPath)]) -> ApiError {
    let name = applied.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let message = if conflicts.len() == 1 {
        let (m, v, p) = &conflicts[0];
        format!("Apply failed with 1 conflict: conflict with \"{m}\" using {v}: {}", fieldset::display(p))
    } else {
        // Grouped by manager, as upstream words it.
        let mut groups: Vec<(&str, &str, Vec<String>)> = Vec::new();
        for (m, v, p) in conflicts {
            match groups.iter_mut().find(|(gm, gv, _)| gm == m && gv == v) {
                Some((_, _, paths)) => paths.push(fieldset::display(p)),
                None => groups.push((m, v, vec![fieldset::display(p)])),
            }
        }
        let text: Vec<String> = groups
            .iter()
            .map(|(m, v, paths)| {
                format!(
                    "conflicts with \"{m}\" using {v}:\n{}",
                    paths.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")
                )
            })
            .collect();
        format!("Apply failed with {} conflicts: {}", conflicts.len(), text.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, v, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {v}"), "field": fieldset::display(p)}))
        .collect();
    let mut details = json!({"name": name, "kind": res.plural, "causes": causes});
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    ApiError { details: Some(details), ..ApiError::new(409, "Conflict", message) }
}

/// Records a non-apply write by `manager`: the fields it changed become its own (operation Update),
/// and leave every other manager.
pub fn track_update(
    res: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let mut list = old.map(entries).unwrap_or_default();
    // Every ownable field, whichever write owns it: other managers' fields that are gone are dropped.
    let all_now = FieldSet::of(new, res.group, res.version, res.kind, &ownable);
    let changed = FieldSet(
        all_now
            .0
            .iter()
            .filter(|p| tracked(p, subresource))
            .filter(|p| old.is_none_or(|o| fieldset::value_at(o, p) != fieldset::value_at(new, p)))
            .cloned()
            .collect(),
    );
    for entry in list.iter_mut() {
        entry.fields = entry.fields.difference(&changed);
        entry.fields.retain(|p| all_now.0.contains(p));
    }
    if !changed.is_empty() {
        let mine = list.iter_mut().find(|e| e.is(manager, "Update", subresource));
        match mine {
            Some(entry) => {
                entry.fields = FieldSet(entry.fields.0.union(&changed.0).cloned().collect());
                entry.time = now.to_string();
                entry.api_version = res.api_version();
            }
            None => list.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: res.api_version(),
                time: now.to_string(),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    store_entries(new, &list);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry;

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn a_second_manager_conflicts_unless_forced() {
        let res = registry::find("apps", "v1", "deployments").expect("deployments");
        let first = apply(res, &json!({}), &deploy(2, "a"), deploy(2, "a"), "alice", false, "t1").expect("first apply");
        assert_eq!(first["metadata"]["managedFields"][0]["manager"], "alice");
        let err = apply(res, &first, &deploy(3, "a"), deploy(3, "a"), "bob", false, "t2").expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"alice\" using apps/v1: .spec.replicas");
        let forced = apply(res, &first, &deploy(3, "a"), deploy(3, "a"), "bob", true, "t2").expect("forced");
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(managers, ["alice", "bob"]);
        // Same values are shared, not conflicts.
        apply(res, &first, &deploy(2, "a"), deploy(2, "a"), "carol", false, "t3").expect("shared ownership");
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let res = registry::find("", "v1", "configmaps").expect("configmaps");
        let v1 = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let first = apply(res, &json!({}), &v1, v1.clone(), "m", false, "t").expect("apply");
        let v2 = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
        let mut merged = first.clone();
        merged["data"] = json!({"a": "1", "b": "2"});
        let second = apply(res, &first, &v2, merged, "m", false, "t").expect("apply");
        assert_eq!(second["data"], json!({"a": "1"}));
    }

    #[test]
    fn updates_take_changed_fields_from_appliers() {
        let res = registry::find("apps", "v1", "deployments").expect("deployments");
        let applied = apply(res, &json!({}), &deploy(2, "a"), deploy(2, "a"), "alice", false, "t1").expect("apply");
        let mut scaled = applied.clone();
        scaled["spec"]["replicas"] = json!(5);
        track_update(res, Some(&applied), &mut scaled, "kubectl-scale", None, "t2");
        let list = scaled["metadata"]["managedFields"].as_array().expect("list");
        assert_eq!(list[1]["manager"], "kubectl-scale");
        assert_eq!(list[1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert!(list[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    }
}
