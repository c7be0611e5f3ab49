//! Cleaning of values taken whole from the patch: directive keys, null
//! members and (for new values) `$patch`-marked maps are dropped, so no
//! directive is ever stored; plus order-preserving key removal.

use std::mem;

use serde_json::Value;

use super::{is_directive, Obj, PATCH};

/// A value taken whole from the patch where the key is new: upstream drops
/// null members and maps carrying `$patch`, here also other directive keys.
pub(super) fn take_new(v: Value) -> Option<Value> {
    clean(v, true)
}

/// A patch map taken verbatim (`$patch: replace`, replace strategy): directive
/// keys and null members go, as the typed round-trip upstream drops them.
pub(super) fn strip(m: Obj) -> Obj {
    strip_with(m, false)
}

/// `drop_marked`: also drop maps carrying `$patch` (upstream removeDirectives).
pub(super) fn clean(v: Value, drop_marked: bool) -> Option<Value> {
    match v {
        Value::Object(m) if drop_marked && m.contains_key(PATCH) => None,
        Value::Object(m) => Some(Value::Object(strip_with(m, drop_marked))),
        Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(|x| clean(x, drop_marked)).collect())),
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
pub(super) fn remove_key(m: &mut Obj, key: &str) -> Option<Value> {
    let v = mem::take(m.get_mut(key)?);
    m.retain(|k, _| k != key);
    Some(v)
}
