//! Map merging (upstream mergeMap): `$patch: replace|delete` on a map,
//! `$retainKeys`, `$deleteFromPrimitiveList/<list>` keys, null deletes and the
//! per-key merge of a patch map into the original, dispatching lists to `list`.

use std::mem;

use serde_json::Value;

use super::super::strategic_meta::{Node, PatchMeta, Strategy};
use super::clean::{remove_key, strip, take_new};
use super::list::{merge_list_field, JsonType};
use super::order::merge_set_element_order;
use super::{bad_patch_type, Obj, Result, DELETE_PRIMITIVE, E, PATCH, RETAIN_KEYS, SET_ORDER};

/// upstream mergeMap
pub(super) fn merge_map(mut original: Obj, mut patch: Obj, node: Node) -> Result<Obj> {
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
            Some(rest) => (rest.strip_prefix('/').ok_or(E::BadPrimitiveList)?.to_owned(), true),
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
        return Ok(if delete_list { Some(original) } else { take_new(patch) });
    }
    Ok(Some(match (original, patch) {
        (Value::Object(_), Value::Object(p)) if meta.strategy == Strategy::Replace => Value::Object(strip(p)),
        (Value::Object(o), Value::Object(p)) => Value::Object(merge_map(o, p, child)?),
        (Value::Array(o), Value::Array(p)) => Value::Array(merge_list_field(o, p, child, meta, delete_list)?),
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
        if !(v.is_null() || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) || kept(k)) {
            return Err(E::BadRetainKeys);
        }
    }
    original.retain(|k, _| kept(k));
    Ok(())
}
