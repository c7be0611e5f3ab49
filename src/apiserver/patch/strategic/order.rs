//! Element order (upstream mergePatchIntoOriginal and normalizeElementOrder):
//! `$setElementOrder/<list>` directives and their validation, and the final
//! order of a merged list, patch items in patch order interleaved with
//! server-only items in server order.

use serde_json::Value;

use super::super::strategic_meta::Node;
use super::clean::{clean, remove_key};
use super::list::{element_type, find_by_key, merge_list_field, JsonType};
use super::{bad_arg, no_merge_key, preview, Obj, Result, E, PATCH, SET_ORDER};

/// upstream mergePatchIntoOriginal: `$setElementOrder/<list>` with its list.
pub(super) fn merge_set_element_order(original: &mut Obj, patch: &mut Obj, node: Node) -> Result<()> {
    let keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ORDER)).cloned().collect();
    for key in keys {
        let order = match remove_key(patch, &key) {
            Some(Value::Array(order)) => order,
            other => return Err(bad_arg("list", other.as_ref())),
        };
        let field = key.strip_prefix(SET_ORDER).and_then(|r| r.strip_prefix('/')).ok_or(E::BadSetElementOrder)?;
        let as_list = |v: Option<&Value>| match v {
            None => Ok(None),
            Some(Value::Array(list)) => Ok(Some(list.clone())),
            Some(other) => Err(bad_arg("list", Some(other))),
        };
        let orig_list = as_list(original.get(field))?;
        let patch_list = as_list(patch.get(field))?;
        let (item, meta) = node.field(field);
        validate_set_order(patch_list.as_deref().unwrap_or_default(), &order, meta.merge_key)?;
        let merged = match (&orig_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.iter().filter_map(|v| clean(v.clone(), true)).collect(),
            (Some(o), Some(p)) => merge_list_field(o.clone(), p.clone(), item, meta, false)?,
            (None, None) => continue,
        };
        let (orig_list, patch_list) = (orig_list.unwrap_or_default(), patch_list.unwrap_or_default());
        let (in_order, server_only) = partition(merged, &order, meta.merge_key)?;
        let kind = element_type(&[&orig_list, &patch_list])?;
        let both = normalize_order(in_order, server_only, &order, &orig_list, meta.merge_key, kind)?;
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
        return Err(E::SetElementOrderMismatch { patch: preview(patch), order: preview(order) });
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let key_of = |v: &Value| {
        let m = v.as_object().ok_or_else(|| bad_arg("map", Some(v)))?;
        m.get(merge_key).cloned().ok_or_else(|| no_merge_key(v, merge_key))
    };
    Ok(key_of(left)? == key_of(right)?)
}

/// Splits `merged` into items present in `by` and the others (server-only).
pub(super) fn partition(merged: Vec<Value>, by: &[Value], merge_key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let (mut in_by, mut rest) = (Vec::new(), Vec::new());
    for v in merged {
        let found = if merge_key.is_empty() {
            by.contains(&v)
        } else {
            let m = v.as_object().ok_or_else(|| bad_arg("map", Some(&v)))?;
            let key = m.get(merge_key).ok_or_else(|| no_merge_key(&v, merge_key))?;
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
pub(super) fn normalize_order(
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
    let (mut left, mut right) = (server_only.into_iter().peekable(), patch.into_iter().peekable());
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
fn sort_by_order(items: Vec<Value>, order: &[Value], merge_key: &str, kind: JsonType) -> Result<Vec<Value>> {
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
        let is_delete = kind == JsonType::Object && v.get(PATCH).and_then(Value::as_str) == Some("delete");
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
