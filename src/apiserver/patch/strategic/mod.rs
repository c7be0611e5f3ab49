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
//!
//! Layout: this file owns the entry point, the directive names, the error
//! enum and the up-front check of the patch; `map` merges maps (`$patch`,
//! `$retainKeys`, `$deleteFromPrimitiveList`), `list` merges lists, `order`
//! handles `$setElementOrder` and element order, `clean` strips directives
//! from values taken whole from the patch.

mod clean;
mod list;
mod map;
mod order;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use super::strategic_meta::{self, Node};

use map::merge_map;

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
    UnsupportedKind { group: String, version: String, kind: String },
    #[error("invalid JSON document: the {what} must be a JSON object, not {found}")]
    NotAnObject { what: &'static str, found: &'static str },
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
    BadArgType { expected: &'static str, actual: &'static str },
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
pub fn strategic_merge(original: &Value, patch: &Value, group: &str, version: &str, kind: &str) -> Result<Value> {
    let table = strategic_meta::table().map_err(E::Metadata)?;
    let unsupported = || E::UnsupportedKind { group: group.into(), version: version.into(), kind: kind.into() };
    let root = table.root(group, version, kind).ok_or_else(unsupported)?;
    let Value::Object(patch) = patch else {
        return Err(E::NotAnObject { what: "patch", found: type_name(Some(patch)) });
    };
    let Value::Object(original) = original else {
        return Err(E::NotAnObject { what: "original object", found: type_name(Some(original)) });
    };
    check(patch, Some(root), 0)?;
    merge_map(original.clone(), patch.clone(), root).map(Value::Object)
}

fn is_directive(key: &str) -> bool {
    key == PATCH || key == RETAIN_KEYS || key.starts_with(SET_ORDER) || key.starts_with(DELETE_PRIMITIVE)
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
        Value::Array(items) => items.iter().try_for_each(|v| check_value(v, node, depth + 1)),
        _ => Ok(()),
    }
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
    E::BadArgType { expected, actual: type_name(actual) }
}

fn no_merge_key(v: &Value, key: &str) -> StrategicMergeError {
    E::NoMergeKey { map: preview(v), key: key.into() }
}

fn bad_patch_type(directive: &Value, map: &Obj) -> StrategicMergeError {
    let directive = directive.as_str().map_or_else(|| directive.to_string(), str::to_owned);
    E::BadPatchType { directive, map: preview(map) }
}

/// Compact JSON for error messages, cut at 200 characters.
fn preview<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}
