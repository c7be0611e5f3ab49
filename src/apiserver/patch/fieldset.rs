//! Field sets as server-side apply tracks them: the set of leaf paths an object (or an applied
//! configuration) sets, in the `fieldsV1` vocabulary — `f:<field>` for fields and map keys,
//! `k:{<merge keys>}` for items of associative lists, `v:<value>` for items of set lists, and `.` for an
//! item itself. List kinds come from the same per-kind metadata as strategic merge patch.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::strategic_meta::{self, Node, Strategy};

/// A path from the object's root to one owned field.
pub type FieldPath = Vec<String>;

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(pub BTreeSet<FieldPath>);

/// How a list's items are identified.
enum ListKind {
    /// By the values of these keys.
    Associative(String),
    /// By their own (scalar) value.
    Set,
    /// Not at all: the list is one value.
    Atomic,
}

fn list_kind(node: Option<Node>, key: &str) -> (Option<Node>, ListKind) {
    let Some(node) = node else {
        return (None, ListKind::Atomic);
    };
    let (child, meta) = node.field(key);
    let kind = match (meta.strategy, meta.merge_key) {
        (Strategy::Merge, "") => ListKind::Set,
        (Strategy::Merge, k) => ListKind::Associative(k.to_string()),
        _ => ListKind::Atomic,
    };
    (Some(child), kind)
}

/// The `k:` element naming a list item by its merge key.
fn item_key(merge_key: &str, item: &Value) -> Option<String> {
    let value = item.get(merge_key)?;
    Some(format!("k:{}", json!({ merge_key: value })))
}

impl FieldSet {
    /// The fields `obj` sets, for the kind rooted at (group, version, kind), under the field paths `keep`
    /// accepts: a field it refuses is not descended.
    pub fn of(obj: &Value, group: &str, version: &str, kind: &str, keep: Keep) -> FieldSet {
        let root = strategic_meta::table().ok().and_then(|t| t.root(group, version, kind));
        let mut set = FieldSet::default();
        if let Some(map) = obj.as_object() {
            Walk { keep, out: &mut set.0 }.map(map, root, &mut Vec::new());
        }
        set
    }

    /// Parses `fieldsV1` JSON.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        fn go(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
            match v.as_object() {
                Some(m) if !m.is_empty() => {
                    for (k, child) in m {
                        path.push(k.clone());
                        go(child, path, out);
                        path.pop();
                    }
                }
                _ if !path.is_empty() => {
                    out.insert(path.clone());
                }
                _ => {}
            }
        }
        let mut out = BTreeSet::new();
        go(v, &mut Vec::new(), &mut out);
        FieldSet(out)
    }

    /// Renders as `fieldsV1` JSON.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        for path in &self.0 {
            let mut cur = &mut root;
            for part in path {
                let next = cur.entry(part.clone()).or_insert_with(|| json!({}));
                match next.as_object_mut() {
                    Some(m) => cur = m,
                    None => break,
                }
            }
        }
        Value::Object(root)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// Paths in `self` but not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    /// Keeps only paths `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&FieldPath) -> bool) {
        self.0.retain(|p| keep(p));
    }
}

/// Which field paths a walk keeps (and descends into).
pub type Keep<'a> = &'a dyn Fn(&[String]) -> bool;

/// One walk over an object, collecting the leaf paths it keeps.
struct Walk<'a> {
    keep: Keep<'a>,
    out: &'a mut BTreeSet<FieldPath>,
}

impl Walk<'_> {
    fn map(&mut self, map: &Map<String, Value>, node: Option<Node>, path: &mut FieldPath) {
        for (key, value) in map {
            path.push(format!("f:{key}"));
            if (self.keep)(path) {
                self.value(key, value, node, path);
            }
            path.pop();
        }
    }

    fn value(&mut self, key: &str, value: &Value, parent: Option<Node>, path: &mut FieldPath) {
        match value {
            Value::Object(m) if !m.is_empty() => {
                let child = parent.map(|n| n.field(key).0);
                self.map(m, child, path);
            }
            Value::Array(items) if !items.is_empty() => match list_kind(parent, key) {
                (child, ListKind::Associative(merge_key))
                    if items.iter().all(|i| item_key(&merge_key, i).is_some()) =>
                {
                    for item in items {
                        let Some(k) = item_key(&merge_key, item) else {
                            continue;
                        };
                        path.push(k);
                        path.push(".".into());
                        self.out.insert(path.clone());
                        path.pop();
                        if let Some(m) = item.as_object() {
                            self.map(m, child, path);
                        }
                        path.pop();
                    }
                }
                (_, ListKind::Set) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                    for item in items {
                        path.push(format!("v:{item}"));
                        self.out.insert(path.clone());
                        path.pop();
                    }
                }
                _ => {
                    self.out.insert(path.clone());
                }
            },
            _ => {
                self.out.insert(path.clone());
            }
        }
    }
}

/// The value at `path` in `obj`, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path {
        if part == "." {
            return Some(cur);
        }
        cur = step(cur, part)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, part: &str) -> Option<&'a Value> {
    if let Some(field) = part.strip_prefix("f:") {
        return cur.get(field);
    }
    if let Some(key) = part.strip_prefix("k:") {
        let wanted: Map<String, Value> = serde_json::from_str(key).ok()?;
        return cur.as_array()?.iter().find(|item| wanted.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
    if let Some(value) = part.strip_prefix("v:") {
        let wanted: Value = serde_json::from_str(value).ok()?;
        return cur.as_array()?.iter().find(|item| **item == wanted);
    }
    None
}

/// Removes the field at `path` from `obj` (a whole list item for a `.` or `v:` path).
pub fn remove_at(obj: &mut Value, path: &[String]) {
    let (parent_path, last) = match path.split_last() {
        Some((last, rest)) if last == "." => match rest.split_last() {
            Some((item, parent)) => (parent, item.as_str()),
            None => return,
        },
        Some((last, rest)) => (rest, last.as_str()),
        None => return,
    };
    let mut cur = obj;
    for part in parent_path {
        let next = match part.strip_prefix("f:") {
            Some(field) => cur.get_mut(field),
            None => {
                let found = step(cur, part).cloned();
                cur.as_array_mut().and_then(|items| items.iter_mut().find(|i| Some(&**i) == found.as_ref()))
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(field);
        }
    } else if let Some(found) = step(cur, last).cloned() {
        if let Some(items) = cur.as_array_mut() {
            items.retain(|i| *i != found);
        }
    }
}

/// Upstream's rendering of a path in conflict messages: `.spec.containers[name="web"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if let Some(field) = part.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = part.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let inner: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(value) = part.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_keyed_by_name_and_round_trip() {
        let d = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let set = FieldSet::of(&d, "apps", "v1", "Deployment", &|_| true);
        let paths: Vec<String> = set.0.iter().map(|p| display(p)).collect();
        assert!(paths.contains(&".spec.replicas".to_string()));
        assert!(paths.contains(&".spec.template.spec.containers[name=\"web\"].image".to_string()), "{paths:?}");
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()), set);
        let image_path = set.0.iter().find(|p| p.last().map(String::as_str) == Some("f:image")).expect("image");
        assert_eq!(value_at(&d, image_path), Some(&json!("nginx")));
        let mut copy = d.clone();
        remove_at(&mut copy, image_path);
        assert_eq!(copy["spec"]["template"]["spec"]["containers"][0], json!({"name": "web"}));
        let item: FieldPath = image_path[..image_path.len() - 1].iter().cloned().chain([".".to_string()]).collect();
        remove_at(&mut copy, &item);
        assert_eq!(copy["spec"]["template"]["spec"]["containers"], json!([]));
    }

    #[test]
    fn finalizers_are_a_set_and_unknown_lists_are_atomic() {
        let cm = json!({"metadata": {"finalizers": ["a", "b"]}, "data": {"k": "v"}});
        let set = FieldSet::of(&cm, "", "v1", "ConfigMap", &|_| true);
        assert!(set.0.contains(&vec!["f:metadata".to_string(), "f:finalizers".into(), "v:\"a\"".into()]));
        let custom = FieldSet::of(&json!({"spec": {"items": [1, 2]}}), "example.com", "v1", "Widget", &|_| true);
        assert_eq!(custom.0.len(), 1);
    }
}
