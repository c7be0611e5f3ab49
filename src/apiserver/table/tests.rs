//! Tests of the table module's own parts: HumanDuration and ages, label and selector text, the
//! dispatch with its fallbacks, and every printer against malformed objects.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::duration::{human_duration, human_secs, since};
use super::format::{format_labels, format_selector};
use super::{cells, columns, PRINTERS};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn human_duration_boundaries() {
    let cases: &[(i64, &str)] = &[
        (-3, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60 * 5, "3h5m"),
        (8 * 3600, "8h"),
        (48 * 3600 - 1, "47h"),
        (48 * 3600, "2d"),
        (51 * 3600, "2d3h"),
        (8 * 86400, "8d"),
        (730 * 86400 - 1, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (8 * 365 * 86400, "8y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_secs(*secs), *want, "{secs}s");
    }
    assert_eq!(human_duration(std::time::Duration::from_millis(1999)), "1s");
    assert_eq!(human_duration(std::time::Duration::from_secs(200)), "3m20s");
}

#[test]
fn ages_and_unknown_timestamps() {
    let now = ts("2024-01-01T00:10:00Z");
    assert_eq!(since(Some("2024-01-01T00:00:00Z"), now), "10m");
    assert_eq!(since(Some("2024-01-01T00:09:59.5Z"), now), "0s");
    assert_eq!(since(Some("garbage"), now), "<unknown>");
    assert_eq!(since(Some("0001-01-01T00:00:00Z"), now), "<unknown>");
    assert_eq!(since(None, now), "<unknown>");
    assert_eq!(since(Some("2024-01-01T00:20:00Z"), now), "<invalid>");
}

#[test]
fn selectors_and_labels() {
    let sel = json!({"matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]},
                             {"key": "d", "operator": "DoesNotExist"}]});
    assert_eq!(format_selector(Some(&sel)), "a=1,b=2,c in (x,y),!d");
    assert_eq!(format_selector(Some(&json!({}))), "<none>");
    assert_eq!(format_selector(None), "<none>");
    assert_eq!(format_selector(Some(&json!({"matchExpressions": [{"key": "a", "operator": "Gt"}]}))), "<error>");
    assert_eq!(format_labels(Some(&json!({"z": "1", "app": "web"}))), "app=web,z=1");
    assert_eq!(format_labels(None), "<none>");
}

#[test]
fn dispatch_and_fallbacks() {
    assert_eq!(columns("", "Pod")[1].name, "Ready");
    assert_eq!(columns("", "pods")[1].name, "Ready");
    assert_eq!(columns("apps", "Deployment").len(), 8);
    let obj = json!({"metadata": {"name": "r", "creationTimestamp": "2024-01-01T00:00:00Z"}});
    let now = ts("2024-01-01T01:00:00Z");
    let names: Vec<_> = columns("rbac.authorization.k8s.io", "Role").iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Created At"]);
    assert_eq!(cells("rbac.authorization.k8s.io", "Role", &obj, now), vec![json!("r"), json!("2024-01-01T00:00:00Z")]);
    assert_eq!(cells("", "limitranges", &json!({"metadata": {"name": "l"}}), now)[1], json!("0001-01-01T00:00:00Z"));
    let names: Vec<_> = columns("example.com", "Widget").iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Age"]);
    assert_eq!(cells("example.com", "Widget", &obj, now), vec![json!("r"), json!("60m")]);
    assert_eq!(cells("example.com", "Widget", &json!(null), now), vec![json!(""), Value::Null]);
}

#[test]
fn every_printer_survives_garbage_and_matches_its_columns() {
    let garbage = [
        json!(null),
        json!({}),
        json!({"metadata": 5, "spec": "x", "status": [1]}),
        json!({"spec": {"containers": [{"name": 1}], "ports": [null], "rules": {}, "metrics": [{"type": "Resource"}]},
               "status": {"containerStatuses": [{"state": {"terminated": {}}}], "conditions": "no", "hard": {"cpu": 1}},
               "subsets": [{"addresses": [{"ip": "::1"}], "ports": [{"port": "x"}]}], "ports": [{}], "endpoints": [{}]}),
    ];
    let now = ts("2024-01-01T00:00:00Z");
    let kinds = PRINTERS.iter().map(|(g, k, _, _)| (*g, *k)).chain([("example.com", "Widget")]);
    for (group, kind) in kinds {
        let cols = columns(group, kind);
        assert_eq!(cols.iter().filter(|c| c.name == "Name" && c.format == "name").count(), 1, "{group}/{kind}");
        for obj in &garbage {
            assert_eq!(cells(group, kind, obj, now).len(), cols.len(), "{group}/{kind} {obj}");
        }
    }
}
