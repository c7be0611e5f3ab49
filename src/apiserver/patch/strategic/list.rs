//! List merging (upstream mergeSliceHandler / mergeSlice): merge-strategy
//! lists of maps by merge key with `$patch` items, lists of primitives as a
//! union or `$deleteFromPrimitiveList`, replace-strategy lists taken whole, and
//! the Go element type every list must have uniformly.

use std::mem;

use serde_json::Value;

use super::super::strategic_meta::{Node, PatchMeta, Strategy};
use super::clean::clean;
use super::map::merge_map;
use super::order::{normalize_order, partition};
use super::{bad_arg, bad_patch_type, no_merge_key, preview, Result, E, PATCH};

/// upstream mergeSliceHandler
pub(super) fn merge_list_field(
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
            return Ok(original.into_iter().filter(|v| !patch.contains(v)).collect());
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
            return Err(E::NoMergeKeyForList { field: preview(&patch) });
        }
        let (original, patch) = split_special(original, patch, merge_key)?;
        let merged = merge_items(original.clone(), &patch, merge_key, item)?;
        (original, patch, merged)
    };
    let (in_patch, server_only) = partition(merged, &patch, merge_key)?;
    normalize_order(in_patch, server_only, &patch, &original, merge_key, kind)
}

/// upstream mergeSliceWithSpecialElements: handles `$patch` items.
fn split_special(mut original: Vec<Value>, patch: Vec<Value>, merge_key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let m = v.as_object().ok_or_else(|| bad_arg("map", Some(&v)))?;
        match m.get(PATCH) {
            None => plain.push(v),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let key = m.get(merge_key).ok_or_else(|| no_merge_key(&v, merge_key))?;
                    original.retain(|o| o.get(merge_key) != Some(key));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(E::MergeListDirective),
                _ => return Err(bad_patch_type(d, m)),
            },
        }
    }
    if replace {
        return Ok((plain.into_iter().filter_map(|v| clean(v, false)).collect(), Vec::new()));
    }
    Ok((original, plain))
}

/// upstream mergeSliceWithoutSpecialElements: merge by key, append the rest.
fn merge_items(mut original: Vec<Value>, patch: &[Value], merge_key: &str, item: Node) -> Result<Vec<Value>> {
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

pub(super) fn find_by_key(list: &[Value], merge_key: &str, key: &Value) -> Result<Option<usize>> {
    for (i, v) in list.iter().enumerate() {
        let m = v.as_object().ok_or_else(|| bad_arg("map", Some(v)))?;
        if m.get(merge_key) == Some(key) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Go's dynamic type of a decoded JSON value (integers and floats differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JsonType {
    Null,
    Bool,
    Int,
    Float,
    String,
    Array,
    Object,
}

impl JsonType {
    pub(super) fn of(v: &Value) -> JsonType {
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
pub(super) fn element_type(lists: &[&[Value]]) -> Result<JsonType> {
    let mut first = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let t = JsonType::of(v);
        match first {
            None if t == JsonType::Array => return Err(E::ListOfLists),
            None => first = Some(t),
            Some(f) if f != t => {
                let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                return Err(E::MixedElementTypes { lists: preview(&all) });
            }
            Some(_) => {}
        }
    }
    first.ok_or(E::EmptyLists)
}
