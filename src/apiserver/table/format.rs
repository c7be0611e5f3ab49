//! Text formatting shared by several printers, after upstream's helpers: bools, IntOrStrings,
//! labels, label selectors, container names and images, load-balancer ingress points and
//! truncated lists.

use std::collections::BTreeSet;

use serde_json::Value;

use super::fields::{at, list_at, str_at};

/// upstream printBool / printBoolPtr.
pub(super) fn bool_text(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// An IntOrString (or a quantity) as text; None when absent.
pub(super) fn scalar_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// labels.FormatLabels: `k=v` pairs sorted by key, `<none>` when empty.
pub(super) fn format_labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// metav1.LabelSelectorAsSelector(sel).String(): "" for an absent or empty selector, Err for an
/// unknown operator or a wrong number of values.
pub(super) fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = at(sel, "/matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for expr in list_at(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let mut values: Vec<&str> = list_at(expr, "/values").iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        let text = match (str_at(expr, "/operator"), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return Err(()),
        };
        if key.is_empty() {
            return Err(());
        }
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs.into_iter().map(|(_, text)| text).collect::<Vec<_>>().join(","))
}

/// metav1.FormatLabelSelector: `<none>` when empty, `<error>` when invalid.
pub(super) fn format_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// layoutContainerCells: the names and the images of the containers at `ptr`, comma-joined.
pub(super) fn container_cells(obj: &Value, ptr: &str) -> [Value; 2] {
    let containers = list_at(obj, ptr);
    let join = |field: &str| {
        let parts: Vec<&str> = containers.iter().map(|c| str_at(c, field)).collect();
        Value::from(parts.join(","))
    };
    [join("/name"), join("/image")]
}

/// A load-balancer status (services and ingresses): the distinct IPs or hostnames, sorted.
pub(super) fn load_balancer_text(obj: &Value, ptr: &str) -> String {
    let entries: BTreeSet<&str> = list_at(obj, ptr)
        .iter()
        .map(|i| match str_at(i, "/ip") {
            "" => str_at(i, "/hostname"),
            ip => ip,
        })
        .filter(|s| !s.is_empty())
        .collect();
    entries.into_iter().collect::<Vec<_>>().join(",")
}

/// listWithMoreString: at most `max` entries then "+ N more...", `<unset>` when empty.
pub(super) fn list_with_more(items: &[String], max: usize) -> String {
    if items.len() > max {
        return format!("{} + {} more...", items[..max].join(","), items.len() - max);
    }
    if items.is_empty() {
        return "<unset>".to_string();
    }
    items.join(",")
}
