//! JSON accessors for the printers: absent, null or mistyped fields read as the zero value, so
//! no printer can panic on a malformed object; plus the NAME and AGE cells and the deletion check.

use jiff::Timestamp;
use serde_json::Value;

use super::duration::since;

/// The value at a JSON pointer, unless absent or null.
pub(super) fn at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr).filter(|x| !x.is_null())
}

pub(super) fn opt_str<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    at(v, ptr).and_then(Value::as_str)
}

pub(super) fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    opt_str(v, ptr).unwrap_or("")
}

pub(super) fn opt_int(v: &Value, ptr: &str) -> Option<i64> {
    at(v, ptr).and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)))
}

pub(super) fn int_at(v: &Value, ptr: &str) -> i64 {
    opt_int(v, ptr).unwrap_or(0)
}

pub(super) fn opt_bool(v: &Value, ptr: &str) -> Option<bool> {
    at(v, ptr).and_then(Value::as_bool)
}

pub(super) fn list_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    at(v, ptr).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

pub(super) fn map_len(v: &Value, ptr: &str) -> usize {
    at(v, ptr).and_then(Value::as_object).map_or(0, |m| m.len())
}

/// The object's name cell.
pub(super) fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, "/metadata/name"))
}

/// The object's AGE cell.
pub(super) fn age(obj: &Value, now: Timestamp) -> Value {
    Value::from(since(opt_str(obj, "/metadata/creationTimestamp"), now))
}

/// Whether metadata.deletionTimestamp is set.
pub(super) fn deleting(obj: &Value) -> bool {
    at(obj, "/metadata/deletionTimestamp").is_some()
}
