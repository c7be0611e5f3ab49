//! Objects as the API server handles them: store keys, the JSON stored (without resourceVersion, which
//! is the record's mod revision), and metadata accessors that never panic on malformed input.

use serde_json::{Map, Value};

use crate::core::registry::ResourceInfo;
use crate::store::Record;

use super::json::to_json;
use super::status::{ApiError, ApiResult};

/// The store key of one object.
pub fn key(resource: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if resource.namespaced => {
            format!("/registry/{}/{}/{ns}/{name}", resource.storage_group(), resource.plural)
        }
        _ => format!("/registry/{}/{}/{name}", resource.storage_group(), resource.plural),
    }
}

/// The store prefix of a list (all namespaces when `namespace` is None).
pub fn prefix(resource: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if resource.namespaced => format!("/registry/{}/{}/{ns}/", resource.storage_group(), resource.plural),
        _ => format!("/registry/{}/{}/", resource.storage_group(), resource.plural),
    }
}

/// Decodes a stored record, stamping its resourceVersion.
pub fn decode(record: &Record) -> ApiResult<Value> {
    decode_at(&record.value, record.mod_revision)
}

/// Decodes stored bytes, stamping `revision` as the resourceVersion.
pub fn decode_at(bytes: &[u8], revision: i64) -> ApiResult<Value> {
    let mut obj: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::internal(format!("corrupt stored object: {e}")))?;
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    Ok(obj)
}

/// Decodes only the metadata of a stored record (with its resourceVersion), skipping the rest unparsed.
pub fn decode_metadata(record: &Record) -> ApiResult<Value> {
    #[derive(serde::Deserialize)]
    struct MetadataOnly {
        #[serde(default)]
        metadata: Value,
    }
    let only: MetadataOnly =
        serde_json::from_slice(&record.value).map_err(|e| ApiError::internal(format!("corrupt stored object: {e}")))?;
    let mut metadata = only.metadata;
    if let Some(meta) = metadata.as_object_mut() {
        meta.insert("resourceVersion".into(), Value::String(record.mod_revision.to_string()));
    }
    Ok(metadata)
}

/// The object as written at `revision` (what decoding the stored record would give, without the parse).
pub fn with_revision(mut obj: Value, revision: i64) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
    obj
}

/// An object as a write left it: its value, with resourceVersion, and the same as JSON, encoded once.
pub struct Written {
    pub object: Value,
    pub json: Vec<u8>,
}

impl Written {
    /// `object` as stored at `revision`, where `stored` is its encoding (see [`encode`]).
    pub fn stored(object: Value, stored: &[u8], revision: i64) -> Written {
        let object = with_revision(object, revision);
        let json = super::json::with_revision(stored, revision).unwrap_or_else(|| to_json(&object));
        Written { object, json }
    }

    /// `object` as a dry run left it.
    pub fn unstored(object: Value) -> Written {
        Written { json: to_json(&object), object }
    }
}

/// Encodes an object for the store, without its resourceVersion.
pub fn encode(obj: &Value) -> ApiResult<Vec<u8>> {
    if obj.pointer("/metadata/resourceVersion").is_none() {
        return Ok(to_json(obj));
    }
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Ok(to_json(&obj))
}

/// The object's metadata map (created if missing or not an object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable_metadata(),
    }
}

#[cold]
fn unreachable_metadata() -> ! {
    // metadata was just made an object above; this cannot be reached.
    panic!("metadata is an object")
}

/// A string field of metadata.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|s| !s.is_empty())
}

/// The labels map (empty if none).
pub fn labels(obj: &Value) -> Map<String, Value> {
    obj.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Whether anything still holds an object marked for deletion: finalizers, or for a namespace the
/// finalizers in its spec.
pub fn deletion_held(obj: &Value) -> bool {
    let spec_finalizers = obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    !finalizers(obj).is_empty() || (obj.get("kind").and_then(Value::as_str) == Some("Namespace") && spec_finalizers)
}

/// The finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Whether deletion has begun.
pub fn is_terminating(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// Everything but metadata and status: what a change to bumps `generation`.
pub fn spec_part(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "kind" | "apiVersion"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a resourceVersion as sent by a client.
pub fn parse_resource_version(rv: &str) -> ApiResult<i64> {
    rv.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
        ApiError::bad_request(format!("invalid resource version {rv:?}: must be a non-negative integer"))
    })
}

/// Now, as metav1.Time (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encode_drops_and_decode_stamps_the_resource_version() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "9"}, "data": {"k": "v"}});
        let bytes = encode(&obj).expect("encode");
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let back = decode_at(&bytes, 12).expect("decode");
        assert_eq!(resource_version(&back), Some("12"));
    }

    #[test]
    fn accessors_tolerate_malformed_metadata() {
        let mut obj = json!({"metadata": "nonsense"});
        assert_eq!(name(&obj), None);
        meta_mut(&mut obj).insert("name".into(), json!("x"));
        assert_eq!(name(&obj), Some("x"));
        assert!(labels(&json!({})).is_empty());
        assert!(parse_resource_version("-1").is_err());
    }
}
