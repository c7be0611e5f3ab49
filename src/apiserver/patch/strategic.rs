//! Strategic merge patch (`application/strategic-merge-patch+json`) for
//! built-in kinds: applies a patch to an object with the semantics of upstream
//! k8s.io/apimachinery/pkg/util/strategicpatch (StrategicMergeMapPatch, i.e.
//! mergeMap with parallel lists merged and unmatched nulls ignored), on
//! serde_json values. Per-field strategies and merge keys come from
//! `super::strategic_meta`.
//!
//! Where upstream relies on the typed round-trip that follows the merge (which
//! drops unknown keys and nulls), values taken whole from the patch are cleaned
//! of directive keys and null members here, so no directive is ever stored.
//! Upstream panics (unhashable merge keys, nil list items) become errors or
//! plain equality; an unknown `$`-key in a struct is rejected like a strict
//! field validation would.

use std::mem;

use serde_json::{Map, Value};

use super::strategic_meta::{self, Node, PatchMeta, Strategy};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList";
/// Deeper patches are refused (serde_json's parser stops at 128 anyway).
const MAX_DEPTH: usize = 256;

type Obj = Map<String, Value>;
type Result<T> = std::result::Result<T, StrategicMergeError>;

/// Why a strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategicMergeError {
    #[error("strategic merge patch is not supported for kind {kind} in {}: it has no built-in schema", api_version(.group, .version))]
    UnsupportedKind {
        group: String,
        version: String,
        kind: String,
    },
    #[error("invalid JSON document: the {what} must be a JSON object, not {found}")]
    NotAnObject {
        what: &'static str,
        found: &'static str,
    },
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType { directive: String, map: String },
    #[error("merging lists cannot yet be specified in the patch")]
    MergeListDirective,
    #[error("unknown directive {key:?}: directives are $patch, $retainKeys, $setElementOrder/<list> and $deleteFromPrimitiveList/<list>")]
    UnknownDirective { key: String },
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    #[error("invalid patch format of primitive list")]
    BadPrimitiveList,
    #[error("the order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}")]
    SetElementOrderMismatch { patch: String, order: String },
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    #[error("expected a {expected}, but received {actual}")]
    BadArgType {
        expected: &'static str,
        actual: &'static str,
    },
    #[error("lists of lists are not supported")]
    ListOfLists,
    #[error("list element types are not identical: {lists}")]
    MixedElementTypes { lists: String },
    #[error("no elements in any of the given slices")]
    EmptyLists,
    #[error("cannot merge lists without merge key for {field}")]
    NoMergeKeyForList { field: String },
    #[error("patch nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("strategic merge patch metadata unavailable: {0}")]
    Metadata(String),
}

use StrategicMergeError as E;

/// Applies `patch` to `original` for the built-in type identified by group
/// ("" for core), version and kind.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    group: &str,
    version: &str,
    kind: &str,
) -> Result<Value> {
    let table = strategic_meta::table().map_err(E::Metadata)?;
    let unsupported = || E::UnsupportedKind {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
    };
    let root = table.root(group, version, kind).ok_or_else(unsupported)?;
    let Value::Object(patch) = patch else {
        return Err(E::NotAnObject {
            what: "patch",
            found: type_name(Some(patch)),
        });
    };
    let Value::Object(original) = original else {
        return Err(E::NotAnObject {
            what: "original object",
            found: type_name(Some(original)),
        });
    };
    check(patch, Some(root), 0)?;
    merge_map(original.clone(), patch.clone(), root).map(Value::Object)
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ORDER)
        || key.starts_with(DELETE_PRIMITIVE)
}

/// Bounds the depth and rejects unknown `$`-keys where keys are field names.
fn check(map: &Obj, node: Option<Node>, depth: usize) -> Result<()> {
    for (key, value) in map {
        let child = match node {
            Some(_) if is_directive(key) => None,
            Some(n) if key.starts_with('$') && n.is_struct() && !n.declares(key) => {
                return Err(E::UnknownDirective { key: key.clone() })
            }
            Some(n) => Some(n.field(key).0),
            None => None,
        };
        check_value(value, child, depth + 1)?;
    }
    Ok(())
}

fn check_value(value: &Value, node: Option<Node>, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(E::TooDeep);
    }
    match value {
        Value::Object(m) => check(m, node, depth),
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_value(v, node, depth + 1)),
        _ => Ok(()),
    }
}

/// upstream mergeMap
fn merge_map(mut original: Obj, mut patch: Obj, node: Node) -> Result<Obj> {
    if let Some(directive) = patch.get(PATCH) {
        return match directive.as_str() {
            Some("replace") => Ok(strip(patch)),
            Some("delete") => Ok(Obj::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, node)?;
    for (key, patch_value) in patch {
        let (key, delete_list) = match key.strip_prefix(DELETE_PRIMITIVE) {
            Some(rest) => (
                rest.strip_prefix('/')
                    .ok_or(E::BadPrimitiveList)?
                    .to_owned(),
                true,
            ),
            None => (key, false),
        };
        if patch_value.is_null() {
            remove_key(&mut original, &key);
            continue;
        }
        let merged = match original.get_mut(&key) {
            None if delete_list => continue,
            None => take_new(patch_value),
            Some(slot) => merge_value(mem::take(slot), patch_value, node.field(&key), delete_list)?,
        };
        match merged {
            Some(v) => {
                original.insert(key, v);
            }
            None => {
                remove_key(&mut original, &key);
            }
        }
    }
    Ok(original)
}

/// Merges one present key; `None` drops it.
fn merge_value(
    original: Value,
    patch: Value,
    (child, meta): (Node, PatchMeta),
    delete_list: bool,
) -> Result<Option<Value>> {
    if JsonType::of(&original) != JsonType::of(&patch) {
        return Ok(if delete_list {
            Some(original)
        } else {
            take_new(patch)
        });
    }
    Ok(Some(match (original, patch) {
        (Value::Object(_), Value::Object(p)) if meta.strategy == Strategy::Replace => {
            Value::Object(strip(p))
        }
        (Value::Object(o), Value::Object(p)) => Value::Object(merge_map(o, p, child)?),
        (Value::Array(o), Value::Array(p)) => {
            Value::Array(merge_list_field(o, p, child, meta, delete_list)?)
        }
        (_, p) => p,
    }))
}

/// upstream applyRetainKeysDirective
fn apply_retain_keys(original: &mut Obj, patch: &mut Obj) -> Result<()> {
    let Some(retain) = remove_key(patch, RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(E::BadRetainKeys);
    };
    let kept = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if !(v.is_null() || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) || kept(k))
        {
            return Err(E::BadRetainKeys);
        }
    }
    original.retain(|k, _| kept(k));
    Ok(())
}

/// upstream mergePatchIntoOriginal: `$setElementOrder/<list>` with its list.
fn merge_set_element_order(original: &mut Obj, patch: &mut Obj, node: Node) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let order = match remove_key(patch, &key) {
            Some(Value::Array(order)) => order,
            other => return Err(bad_arg("list", other.as_ref())),
        };
        let field = key
            .strip_prefix(SET_ORDER)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(E::BadSetElementOrder)?;
        let as_list = |v: Option<&Value>| match v {
            None => Ok(None),
            Some(Value::Array(list)) => Ok(Some(list.clone())),
            Some(other) => Err(bad_arg("list", Some(other))),
        };
        let orig_list = as_list(original.get(field))?;
        let patch_list = as_list(patch.get(field))?;
        let (item, meta) = node.field(field);
        validate_set_order(
            patch_list.as_deref().unwrap_or_default(),
            &order,
            meta.merge_key,
        )?;
        let merged = match (&orig_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.iter().filter_map(|v| clean(v.clone(), true)).collect(),
            (Some(o), Some(p)) => merge_list_field(o.clone(), p.clone(), item, meta, false)?,
            (None, None) => continue,
        };
        let (orig_list, patch_list) = (
            orig_list.unwrap_or_default(),
            patch_list.unwrap_or_default(),
        );
        let (in_order, server_only) = partition(merged, &order, meta.merge_key)?;
        let kind = element_type(&[&orig_list, &patch_list])?;
        let both = normalize_order(
            in_order,
            server_only,
            &order,
            &orig_list,
            meta.merge_key,
            kind,
        )?;
        original.insert(field.to_owned(), Value::Array(both));
        remove_key(patch, field);
    }
    Ok(())
}

/// upstream validatePatchWithSetOrderList
fn validate_set_order(patch: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = if merge_key.is_empty() {
        patch.iter().collect()
    } else {
        let mut items = Vec::new();
        for v in patch {
            let m = v.as_object().ok_or_else(|| bad_arg("map", Some(v)))?;
            if m.get(PATCH).and_then(Value::as_str) != Some("delete") {
                items.push(v);
            }
        }
        items
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < items.len() && oi < order.len() {
        if items[pi].get(PATCH).is_some() {
            pi += 1;
            continue;
        }
        if merge_key_equal(items[pi], &order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < items.len() {
        return Err(E::SetElementOrderMismatch {
            patch: preview(patch),
            order: preview(order),
        });
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let key_of = |v: &Value| {
        let m = v.as_object().ok_or_else(|| bad_arg("map", Some(v)))?;
        m.get(merge_key)
            .cloned()
            .ok_or_else(|| no_merge_key(v, merge_key))
    };
    Ok(key_of(left)? == key_of(right)?)
}

/// upstream mergeSliceHandler
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    item: Node,
    meta: PatchMeta,
    delete_list: bool,
) -> Result<Vec<Value>> {
    if meta.strategy == Strategy::Merge || delete_list {
        merge_list(original, patch, item, meta.merge_key, delete_list)
    } else {
        Ok(patch.into_iter().filter_map(|v| clean(v, false)).collect())
    }
}

/// upstream mergeSlice
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    item: Node,
    merge_key: &str,
    delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_type(&[&original, &patch])?;
    let (original, patch, merged) = if kind != JsonType::Object {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        (original, patch, merged)
    } else {
        if merge_key.is_empty() {
            return Err(E::NoMergeKeyForList {
                field: preview(&patch),
            });
        }
        let (original, patch) = split_special(original, patch, merge_key)?;
        let merged = merge_items(original.clone(), &patch, merge_key, item)?;
        (original, patch, merged)
    };
    let (in_patch, server_only) = partition(merged, &patch, merge_key)?;
    normalize_order(in_patch, server_only, &patch, &original, merge_key, kind)
}

/// upstream mergeSliceWithSpecialElements: handles `$patch` items.
fn split_special(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let m = v.as_object().ok_or_else(|| bad_arg("map", Some(&v)))?;
        match m.get(PATCH) {
            None => plain.push(v),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let key = m
                        .get(merge_key)
                        .ok_or_else(|| no_merge_key(&v, merge_key))?;
                    original.retain(|o| o.get(merge_key) != Some(key));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(E::MergeListDirective),
                _ => return Err(bad_patch_type(d, m)),
            },
        }
    }
    if replace {
        return Ok((
            plain.into_iter().filter_map(|v| clean(v, false)).collect(),
            Vec::new(),
        ));
    }
    Ok((original, plain))
}

/// upstream mergeSliceWithoutSpecialElements: merge by key, append the rest.
fn merge_items(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    item: Node,
) -> Result<Vec<Value>> {
    for v in patch {
        let m = v.as_object().ok_or_else(|| bad_arg("map", Some(v)))?;
        let key = m.get(merge_key).ok_or_else(|| no_merge_key(v, merge_key))?;
        match find_by_key(&original, merge_key, key)? {
            Some(i) => {
                let Value::Object(o) = mem::take(&mut original[i]) else {
                    return Err(bad_arg("map", None));
                };
                original[i] = Value::Object(merge_map(o, m.clone(), item)?);
            }
            None => original.extend(clean(v.clone(), false)),
        }
    }
    Ok(original)
}

fn find_by_key(list: &[Value], merge_key: &str, key: &Value) -> Result<Option<usize>> {
    for (i, v) in list.iter().enumerate() {
        let m = v.as_object().ok_or_else(|| bad_arg("map", Some(v)))?;
        if m.get(merge_key) == Some(key) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Splits `merged` into items present in `by` and the others (server-only).
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let (mut in_by, mut rest) = (Vec::new(), Vec::new());
    for v in merged {
        let found = if merge_key.is_empty() {
            by.contains(&v)
        } else {
            let m = v.as_object().ok_or_else(|| bad_arg("map", Some(&v)))?;
            let key = m
                .get(merge_key)
                .ok_or_else(|| no_merge_key(&v, merge_key))?;
            find_by_key(by, merge_key, key)?.is_some()
        };
        if found {
            in_by.push(v)
        } else {
            rest.push(v)
        }
    }
    Ok((in_by, rest))
}

/// upstream normalizeElementOrder: patch items in patch order, server-only
/// items in server order, interleaved by server order.
fn normalize_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: JsonType,
) -> Result<Vec<Value>> {
    let patch = sort_by_order(patch, patch_order, merge_key, kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, kind)?;
    let pos = |v: &Value| position(server_order, v, merge_key, kind);
    let mut out = Vec::with_capacity(patch.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patch.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((pos(l), pos(r)), (Some(a), Some(b)) if a < b),
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    Ok(out)
}

/// upstream normalizeSliceOrder; items missing from `order` go last (upstream
/// leaves that case to an inconsistent comparator).
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: JsonType,
) -> Result<Vec<Value>> {
    let (mut keep, mut deletes) = (Vec::with_capacity(items.len()), Vec::new());
    if kind == JsonType::Object {
        for v in items.iter().chain(order) {
            let m = v.as_object().ok_or_else(|| bad_arg("map", Some(v)))?;
            if !m.contains_key(merge_key) {
                return Err(no_merge_key(v, merge_key));
            }
        }
    }
    for v in items {
        let is_delete =
            kind == JsonType::Object && v.get(PATCH).and_then(Value::as_str) == Some("delete");
        if is_delete {
            deletes.push(v)
        } else {
            keep.push(v)
        }
    }
    keep.sort_by_cached_key(|v| position(order, v, merge_key, kind).unwrap_or(usize::MAX));
    keep.append(&mut deletes);
    Ok(keep)
}

fn position(list: &[Value], v: &Value, merge_key: &str, kind: JsonType) -> Option<usize> {
    if kind != JsonType::Object {
        return list.iter().position(|x| x == v);
    }
    let wanted = key_of(v, merge_key);
    list.iter().position(|x| key_of(x, merge_key) == wanted)
}

/// The merge key's value as Go sees it: absent and null are both nil.
fn key_of<'a>(v: &'a Value, merge_key: &str) -> Option<&'a Value> {
    v.get(merge_key).filter(|k| !k.is_null())
}

/// Go's dynamic type of a decoded JSON value (integers and floats differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JsonType {
    Null,
    Bool,
    Int,
    Float,
    String,
    Array,
    Object,
}

impl JsonType {
    fn of(v: &Value) -> JsonType {
        match v {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Bool,
            Value::Number(n) if n.is_i64() => JsonType::Int,
            Value::Number(_) => JsonType::Float,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }
}

/// upstream sliceElementType
fn element_type(lists: &[&[Value]]) -> Result<JsonType> {
    let mut first = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let t = JsonType::of(v);
        match first {
            None if t == JsonType::Array => return Err(E::ListOfLists),
            None => first = Some(t),
            Some(f) if f != t => {
                let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                return Err(E::MixedElementTypes {
                    lists: preview(&all),
                });
            }
            Some(_) => {}
        }
    }
    first.ok_or(E::EmptyLists)
}

/// A value taken whole from the patch where the key is new: upstream drops
/// null members and maps carrying `$patch`, here also other directive keys.
fn take_new(v: Value) -> Option<Value> {
    clean(v, true)
}

/// A patch map taken verbatim (`$patch: replace`, replace strategy): directive
/// keys and null members go, as the typed round-trip upstream drops them.
fn strip(m: Obj) -> Obj {
    strip_with(m, false)
}

/// `drop_marked`: also drop maps carrying `$patch` (upstream removeDirectives).
fn clean(v: Value, drop_marked: bool) -> Option<Value> {
    match v {
        Value::Object(m) if drop_marked && m.contains_key(PATCH) => None,
        Value::Object(m) => Some(Value::Object(strip_with(m, drop_marked))),
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .filter_map(|x| clean(x, drop_marked))
                .collect(),
        )),
        other => Some(other),
    }
}

fn strip_with(m: Obj, drop_marked: bool) -> Obj {
    m.into_iter()
        .filter(|(k, v)| !v.is_null() && !is_directive(k))
        .filter_map(|(k, v)| Some((k, clean(v, drop_marked)?)))
        .collect()
}

/// Removes a key keeping the order of the others (with or without
/// serde_json's preserve_order feature).
fn remove_key(m: &mut Obj, key: &str) -> Option<Value> {
    let v = mem::take(m.get_mut(key)?);
    m.retain(|k, _| k != key);
    Some(v)
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None | Some(Value::Null) => "nil",
        Some(Value::Bool(_)) => "a bool",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "a list",
        Some(Value::Object(_)) => "a map",
    }
}

fn bad_arg(expected: &'static str, actual: Option<&Value>) -> StrategicMergeError {
    E::BadArgType {
        expected,
        actual: type_name(actual),
    }
}

fn no_merge_key(v: &Value, key: &str) -> StrategicMergeError {
    E::NoMergeKey {
        map: preview(v),
        key: key.into(),
    }
}

fn bad_patch_type(directive: &Value, map: &Obj) -> StrategicMergeError {
    let directive = directive
        .as_str()
        .map_or_else(|| directive.to_string(), str::to_owned);
    E::BadPatchType {
        directive,
        map: preview(map),
    }
}

/// Compact JSON for error messages, cut at 200 characters.
fn preview<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b", "c"]},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"spec": {
                    "containers": [
                        {"name": "app", "image": "app:1", "args": ["--a", "--b"],
                         "env": [{"name": "X", "value": "1"}],
                         "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "100m"}}},
                        {"name": "sidecar", "image": "side:1"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }}
            }
        })
    }

    fn apply(patch: Value) -> Result<Value> {
        strategic_merge(&deployment(), &patch, "apps", "v1", "Deployment")
    }

    fn containers(v: &Value) -> &Value {
        &v["spec"]["template"]["spec"]["containers"]
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    }

    #[test]
    fn containers_merge_by_name() {
        let out = apply(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}})).unwrap();
        let c = containers(&out);
        assert_eq!(names(c), ["app", "sidecar"]);
        assert_eq!(c[0]["image"], "app:2");
        assert_eq!(c[0]["args"], json!(["--a", "--b"]));
        assert_eq!(c[1], json!({"name": "sidecar", "image": "side:1"}));
        assert_eq!(out["spec"]["replicas"], 1);
    }

    /// Upstream puts patch items not found on the server before the
    /// server-only items (mergeSortedSlice), unless `$setElementOrder` says
    /// otherwise; kubectl sends that list, so `kubectl apply` appends.
    #[test]
    fn new_container_is_added_and_cleaned() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "extra", "image": "x:1", "command": null, "env": [{"name": "Y", "value": "2", "$patch": "x"}]}
        ]}}}});
        let out = apply(patch).unwrap();
        assert_eq!(names(containers(&out)), ["extra", "app", "sidecar"]);
        assert_eq!(
            containers(&out)[0],
            json!({"name": "extra", "image": "x:1", "env": [{"name": "Y", "value": "2"}]})
        );
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}, {"name": "extra"}],
            "containers": [{"name": "extra", "image": "x:1"}]
        }}}});
        assert_eq!(
            names(containers(&apply(patch).unwrap())),
            ["app", "sidecar", "extra"]
        );
    }

    /// Cases of upstream's patch_test.go, mapped onto Pod containers (merge
    /// key name) and metadata.finalizers (merging primitive list).
    #[test]
    fn upstream_cases() {
        let pod = |containers: Value, finalizers: Value| json!({"metadata": {"finalizers": finalizers}, "spec": {"containers": containers}});
        let c = |list: &[(&str, &str)]| -> Value {
            list.iter()
                .map(|(n, v)| {
                    if v.is_empty() {
                        json!({"name": n})
                    } else {
                        json!({"name": n, "value": v})
                    }
                })
                .collect()
        };
        let cases = [
            // preserve the order from the patch in a merging list 2
            (
                pod(
                    c(&[("1", ""), ("2", "b"), ("3", "")]),
                    json!(["1", "2", "3"]),
                ),
                json!({"spec": {"containers": c(&[("3", "c"), ("1", "a")])}, "metadata": {"finalizers": ["3", "1"]}}),
                pod(
                    c(&[("2", "b"), ("3", "c"), ("1", "a")]),
                    json!(["2", "3", "1"]),
                ),
            ),
            // add field to map in merging list with conflict (three-way result)
            (
                pod(
                    json!([{"name": "1", "other": "a"}, {"name": "3", "value": "2", "other": "b"}]),
                    json!([]),
                ),
                json!({"spec": {"$setElementOrder/containers": [{"name": "1"}, {"name": "2"}], "containers": c(&[("1", "1"), ("2", "2")])}}),
                pod(
                    json!([{"name": "1", "value": "1", "other": "a"}, {"name": "2", "value": "2"}, {"name": "3", "value": "2", "other": "b"}]),
                    json!([]),
                ),
            ),
            // $setElementOrder contains items not present in the list
            (
                pod(c(&[("1", ""), ("3", "")]), json!(["1", "3"])),
                json!({"spec": {"$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}], "containers": c(&[("3", "3"), ("1", "1")])},
                    "metadata": {"$setElementOrder/finalizers": ["3", "2", "1"]}}),
                pod(c(&[("3", "3"), ("1", "1")]), json!(["3", "1"])),
            ),
            // delete all duplicate entries; add and delete items in lists of scalars
            (
                pod(
                    c(&[("1", ""), ("1", ""), ("2", "a"), ("3", ""), ("3", "")]),
                    json!(["1", "2", "3", "4"]),
                ),
                json!({"spec": {"containers": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]},
                    "metadata": {"$setElementOrder/finalizers": ["1", "2", "5"], "$deleteFromPrimitiveList/finalizers": ["3"], "finalizers": ["5"]}}),
                pod(c(&[("2", "a")]), json!(["1", "2", "5", "4"])),
            ),
            // delete all items from merging list
            (
                pod(c(&[("1", ""), ("2", "")]), json!([])),
                json!({"spec": {"containers": [{"$patch": "replace"}]}}),
                pod(json!([]), json!([])),
            ),
        ];
        for (i, (original, patch, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                strategic_merge(&original, &patch, "", "v1", "Pod").unwrap(),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn patch_order_wins_over_server_order() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "new"}, {"name": "app", "image": "app:3"}
        ]}}}});
        assert_eq!(
            names(containers(&apply(patch).unwrap())),
            ["new", "app", "sidecar"]
        );
    }

    #[test]
    fn delete_directive_removes_container() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}});
        assert_eq!(names(containers(&apply(patch).unwrap())), ["app"]);
    }

    #[test]
    fn null_deletes_label_and_maps_merge() {
        let out =
            apply(json!({"metadata": {"labels": {"tier": null, "env": "prod", "gone": null}}}))
                .unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "env": "prod"})
        );
        assert_eq!(out["metadata"]["name"], "web");
    }

    #[test]
    fn set_element_order_reorders() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "app:2"}]
        }}}});
        let out = apply(patch).unwrap();
        assert_eq!(names(containers(&out)), ["sidecar", "app"]);
        assert_eq!(containers(&out)[1]["image"], "app:2");
        // Order only, no list in the patch.
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}});
        assert_eq!(
            apply(patch).unwrap()["metadata"]["finalizers"],
            json!(["c", "a", "b"])
        );
        // The patch list must follow the order list.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "sidecar", "image": "s:2"}, {"name": "app", "image": "a:2"}]
        }}}});
        assert!(matches!(
            apply(patch),
            Err(E::SetElementOrderMismatch { .. })
        ));
    }

    #[test]
    fn retain_keys_on_deployment_strategy() {
        let out =
            apply(json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}))
                .unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        // Without the directive the map merges and rollingUpdate stays.
        let out = apply(json!({"spec": {"strategy": {"type": "Recreate"}}})).unwrap();
        assert_eq!(out["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
        // Patch keys must be listed.
        let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}});
        assert_eq!(apply(bad), Err(E::BadRetainKeys));
        assert_eq!(
            apply(json!({"spec": {"strategy": {"$retainKeys": "type"}}})),
            Err(E::BadRetainKeys)
        );
    }

    #[test]
    fn retain_keys_on_volume_source() {
        let patch = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "data", "$retainKeys": ["name", "configMap"], "configMap": {"name": "cm"}}
        ]}}}});
        let out = apply(patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "data", "configMap": {"name": "cm"}}])
        );
    }

    #[test]
    fn primitive_lists_union_and_delete() {
        let out = apply(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}))
            .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        let out = apply(json!({"metadata": {"finalizers": ["d", "a"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["d", "a", "b", "c"]));
        // Deleting from an absent list adds nothing.
        let out = apply(json!({"spec": {"$deleteFromPrimitiveList/nothing": ["x"]}})).unwrap();
        assert!(out["spec"].get("nothing").is_none());
        assert_eq!(
            apply(json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}})),
            Err(E::BadPrimitiveList)
        );
    }

    #[test]
    fn list_without_strategy_is_replaced() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["--c"]}]}}}});
        assert_eq!(
            containers(&apply(patch).unwrap())[0]["args"],
            json!(["--c"])
        );
    }

    #[test]
    fn replace_directive_on_map() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "resources": {"$patch": "replace", "limits": {"memory": "1Gi"}}}
        ]}}}});
        let out = apply(patch).unwrap();
        assert_eq!(
            containers(&out)[0]["resources"],
            json!({"limits": {"memory": "1Gi"}})
        );
        // $patch: delete on a map empties it.
        let out = apply(json!({"metadata": {"labels": {"$patch": "delete"}}})).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({}));
    }

    #[test]
    fn replace_directive_in_list() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "o:1"}, {"$patch": "replace"}
        ]}}}});
        assert_eq!(
            containers(&apply(patch).unwrap()),
            &json!([{"name": "only", "image": "o:1"}])
        );
    }

    #[test]
    fn new_fields_lose_directives() {
        let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "k"}], "affinity": {"$patch": "delete"}}},
            "minReadySeconds": 5, "paused": {"$retainKeys": []}}});
        let out = apply(patch).unwrap();
        let spec = &out["spec"];
        assert!(spec["template"]["spec"].get("affinity").is_none());
        assert_eq!(
            spec["template"]["spec"]["tolerations"],
            json!([{"key": "k"}])
        );
        assert_eq!(spec["paused"], json!({}));
        assert_eq!(spec["minReadySeconds"], 5);
    }

    #[test]
    fn replace_strategy_and_other_kinds() {
        let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
        let out = strategic_merge(
            &pdb,
            &json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
            "policy",
            "v1",
            "PodDisruptionBudget",
        )
        .unwrap();
        assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let out = strategic_merge(
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            "",
            "v1",
            "Service",
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        let crd = json!({"spec": {"versions": []}});
        let patch = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"$ref": "#/x", "properties": {"$odd": {}}}}}]}});
        assert!(strategic_merge(
            &crd,
            &patch,
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition"
        )
        .is_ok());
    }

    #[test]
    fn unknown_kind_is_unsupported() {
        let err =
            strategic_merge(&json!({}), &json!({}), "example.com", "v1", "Widget").unwrap_err();
        assert!(matches!(err, E::UnsupportedKind { .. }));
        assert!(err.to_string().contains("example.com/v1"));
    }

    #[test]
    fn malformed_patches_are_errors() {
        let d = deployment();
        assert!(matches!(
            strategic_merge(&d, &json!([1]), "apps", "v1", "Deployment"),
            Err(E::NotAnObject { .. })
        ));
        assert!(matches!(
            strategic_merge(&d, &json!("x"), "apps", "v1", "Deployment"),
            Err(E::NotAnObject { .. })
        ));
        assert!(matches!(
            strategic_merge(&json!(null), &json!({}), "apps", "v1", "Deployment"),
            Err(E::NotAnObject { .. })
        ));
        let bad_type = apply(json!({"metadata": {"labels": {"$patch": "bogus"}}})).unwrap_err();
        assert_eq!(
            bad_type.to_string(),
            r#"unknown patch type: bogus in map: {"$patch":"bogus"}"#
        );
        assert!(matches!(
            apply(json!({"metadata": {"$patch": "merge"}})),
            Err(E::BadPatchType { .. })
        ));
        let list = |item: Value| json!({"spec": {"template": {"spec": {"containers": [item]}}}});
        assert_eq!(
            apply(list(json!({"name": "app", "$patch": "merge"}))),
            Err(E::MergeListDirective)
        );
        assert!(matches!(
            apply(list(json!({"name": "app", "$patch": 3}))),
            Err(E::BadPatchType { .. })
        ));
        assert!(matches!(
            apply(list(json!({"image": "x"}))),
            Err(E::NoMergeKey { .. })
        ));
        assert!(matches!(
            apply(list(json!({"$patch": "delete"}))),
            Err(E::NoMergeKey { .. })
        ));
        assert!(matches!(
            apply(list(json!("app"))),
            Err(E::MixedElementTypes { .. })
        ));
        assert!(matches!(
            apply(list(json!([1]))),
            Err(E::MixedElementTypes { .. })
        ));
        assert!(matches!(
            apply(json!({"spec": {"$foo": 1}})),
            Err(E::UnknownDirective { .. })
        ));
        assert!(matches!(
            apply(json!({"spec": {"$setElementOrder": []}})),
            Err(E::BadSetElementOrder)
        ));
        assert!(matches!(
            apply(json!({"spec": {"$setElementOrder/x": 1}})),
            Err(E::BadArgType { .. })
        ));
        let err = apply(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app"}], "$setElementOrder/containers": [{"image": "x"}]}}}}),
        );
        assert!(matches!(err, Err(E::NoMergeKey { .. })));
        let lol = strategic_merge(
            &json!({"m": [[1]]}),
            &json!({"metadata": {"finalizers": [[1]]}}),
            "apps",
            "v1",
            "Deployment",
        );
        assert!(lol.is_ok(), "new lists are taken whole");
        let lol = strategic_merge(
            &json!({"metadata": {"finalizers": [["a"]]}}),
            &json!({"metadata": {"finalizers": [["b"]]}}),
            "apps",
            "v1",
            "Deployment",
        );
        assert_eq!(lol, Err(E::ListOfLists));
        let mut deep = json!(1);
        for _ in 0..400 {
            deep = json!({"a": deep});
        }
        assert_eq!(
            apply(json!({"metadata": {"annotations": deep}})),
            Err(E::TooDeep)
        );
    }

    /// Deterministic pseudo-random patches against the Deployment: never a panic.
    #[test]
    fn random_patches_never_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let keys = [
            "spec",
            "template",
            "containers",
            "name",
            "app",
            "image",
            "metadata",
            "finalizers",
            "labels",
            "strategy",
            "$patch",
            "$retainKeys",
            "$setElementOrder/containers",
            "$deleteFromPrimitiveList/finalizers",
            "volumes",
            "args",
            "env",
            "replace",
            "delete",
            "merge",
            "type",
        ];
        fn gen(next: &mut dyn FnMut(u64) -> u64, keys: &[&str], depth: u32) -> Value {
            match if depth > 5 { next(4) } else { next(7) } {
                0 => Value::Null,
                1 => json!(next(3)),
                2 => json!(keys[next(keys.len() as u64) as usize]),
                3 => json!(next(2) == 0),
                4 | 5 => (0..next(4)).map(|_| gen(next, keys, depth + 1)).collect(),
                _ => Value::Object(
                    (0..next(4))
                        .map(|_| {
                            (
                                keys[next(keys.len() as u64) as usize].to_owned(),
                                gen(next, keys, depth + 1),
                            )
                        })
                        .collect(),
                ),
            }
        }
        for _ in 0..5_000 {
            let patch =
                json!({"spec": gen(&mut next, &keys, 0), "metadata": gen(&mut next, &keys, 0)});
            let _ = apply(patch.clone());
            let _ = strategic_merge(&patch, &deployment(), "apps", "v1", "Deployment");
        }
    }
}
