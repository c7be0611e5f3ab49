//! Field selectors: which fields each kind can be selected by (as upstream's field label conversion
//! functions allow) and how a field's value is read from an object.

use serde_json::Value;

use crate::core::registry::ResourceInfo;

/// The selectable fields of a kind beyond metadata.name and metadata.namespace.
fn kind_fields(res: &ResourceInfo) -> &'static [&'static str] {
    match (res.group, res.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &["regarding.kind", "regarding.namespace", "regarding.name", "reason", "type"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("certificates.k8s.io", "CertificateSigningRequest") => &["spec.signerName"],
        _ => &[],
    }
}

/// Whether `field` can be selected on `res`.
pub fn supported(res: &ResourceInfo, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace") || kind_fields(res).contains(&field)
}

/// The part of `obj` selectors look at — its name, namespace and labels, and the kind's selectable
/// fields — so a watch can keep that for every event rather than the whole object.
pub fn selectable(res: &ResourceInfo, obj: &Value) -> Value {
    let mut out = serde_json::json!({});
    let fields = ["metadata.name", "metadata.namespace", "metadata.labels"].into_iter();
    let source = (res.kind == "Event" && res.group.is_empty()).then_some("source.component");
    for path in fields.chain(kind_fields(res).iter().copied()).chain(source) {
        if let Some(found) = path.split('.').try_fold(obj, |v, part| v.get(part)) {
            insert_at(&mut out, &path.split('.').collect::<Vec<_>>(), found.clone());
        }
    }
    out
}

/// Sets `value` at the path `parts` of `target`, making the objects on the way.
fn insert_at(target: &mut Value, parts: &[&str], value: Value) {
    let Some(map) = target.as_object_mut() else { return };
    match parts {
        [last] => {
            map.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            insert_at(map.entry(*first).or_insert_with(|| serde_json::json!({})), rest, value);
        }
        [] => {}
    }
}

/// The value of `field` in `obj` as a field selector compares it (missing fields are "").
pub fn value(res: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    if !supported(res, field) {
        return None;
    }
    let path = match (res.kind, field) {
        // Core events' `source` selects source.component.
        ("Event", "source") if res.group.is_empty() => "source.component",
        _ => field,
    };
    let found = path.split('.').try_fold(obj, |v, part| v.get(part));
    Some(match found {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // Unset booleans select as false, as upstream's conversion of an unset spec.unschedulable does.
        None if matches!(field, "spec.unschedulable" | "spec.hostNetwork") => "false".into(),
        _ => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry;
    use serde_json::json;

    #[test]
    fn the_selectable_part_selects_as_the_whole_does() {
        let pods = registry::find("", "v1", "pods").expect("pods");
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}, "status": {"phase": "Running", "podIP": "10.0.0.1"}});
        let part = selectable(pods, &pod);
        assert_eq!(
            part,
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "podIP": "10.0.0.1"}})
        );
        for field in ["spec.nodeName", "status.phase", "spec.hostNetwork", "metadata.name"] {
            assert_eq!(value(pods, &part, field), value(pods, &pod, field), "{field}");
        }
    }

    #[test]
    fn reads_supported_fields_only() {
        let pods = registry::find("", "v1", "pods").expect("pods");
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert_eq!(value(pods, &pod, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(value(pods, &pod, "status.podIP").as_deref(), Some(""));
        assert_eq!(value(pods, &pod, "spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(value(pods, &pod, "spec.containers"), None);
        let cms = registry::find("", "v1", "configmaps").expect("cms");
        assert!(!supported(cms, "data.x"));
        assert!(supported(cms, "metadata.name"));
    }
}
