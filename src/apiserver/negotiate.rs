//! Content negotiation: what the client accepts (plain JSON, a meta.k8s.io Table, aggregated discovery),
//! request bodies (JSON or YAML, bounded in size and nesting), and rendering objects, lists and Tables.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::core::registry::ResourceInfo;

use super::status::{ApiError, ApiResult};
use super::table;

/// Request bodies larger than this are refused with 413 (upstream's limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Deepest JSON/YAML nesting accepted.
const MAX_DEPTH: usize = 100;

/// What the response should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// A meta.k8s.io/v1 Table (`v1beta1` answers the same shape under its own apiVersion).
    Table {
        beta: bool,
    },
    /// PartialObjectMetadata (a list of them for lists): metadata only, for metadata clients.
    Metadata {
        beta: bool,
    },
}

/// Parses the Accept header into the preferred output; 406 when only unsupported types are accepted.
pub fn output(headers: &HeaderMap) -> ApiResult<Output> {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    let mut plain_ok = false;
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let params: Vec<(&str, &str)> = params.filter_map(|p| p.split_once('=')).collect();
        let get = |k: &str| params.iter().find(|(name, _)| *name == k).map(|(_, v)| *v);
        let json_like = matches!(media, "application/json" | "*/*" | "application/*");
        if json_like && get("as") == Some("Table") && get("g") == Some("meta.k8s.io") {
            match get("v") {
                Some("v1") => return Ok(Output::Table { beta: false }),
                Some("v1beta1") => return Ok(Output::Table { beta: true }),
                _ => continue,
            }
        }
        if json_like
            && matches!(get("as"), Some("PartialObjectMetadata" | "PartialObjectMetadataList"))
            && get("g") == Some("meta.k8s.io")
        {
            match get("v") {
                Some("v1") => return Ok(Output::Metadata { beta: false }),
                Some("v1beta1") => return Ok(Output::Metadata { beta: true }),
                _ => continue,
            }
        }
        if json_like && get("as").is_none() {
            plain_ok = true;
        }
        if matches!(media, "application/vnd.kubernetes.protobuf" | "application/yaml") && get("as").is_none() {
            // Answered with JSON: clients that list JSON too accept it; those that do not still get a
            // readable body rather than nothing.
            plain_ok = true;
        }
    }
    if plain_ok {
        Ok(Output::Json)
    } else {
        Err(ApiError::not_acceptable(format!("only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io; got {accept:?}")))
    }
}

/// Whether the client asks for aggregated discovery (`v2` or `v2beta1`), and which.
pub fn aggregated_discovery(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok())?;
    for part in accept.split(',') {
        if part.contains("as=APIGroupDiscoveryList") && part.contains("g=apidiscovery.k8s.io") {
            if part.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if part.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

/// Decodes a JSON or YAML request body into a JSON value.
pub fn decode_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(format!("the request body is larger than {MAX_BODY_BYTES} bytes")));
    }
    let content_type =
        headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let value = match media {
        "application/json"
        | ""
        | "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?,
        "application/yaml" | "application/apply-patch+yaml" => decode_yaml(body)?,
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(body).map_err(|e| match e {
            super::protobuf::ProtobufError::Schema(_) => ApiError::internal(e),
            other => ApiError::bad_request(format!("error decoding protobuf request body: {other}")),
        })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if depth(&value) > MAX_DEPTH {
        return Err(ApiError::bad_request(format!("the request body is nested more than {MAX_DEPTH} levels deep")));
    }
    Ok(value)
}

/// YAML to JSON. Anchors are refused — without them no alias can exist — so a small document cannot
/// expand into a huge one; clients send plain YAML or JSON.
pub fn decode_yaml(body: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
    if has_anchor(text) {
        return Err(ApiError::bad_request("YAML anchors and aliases are not allowed in request bodies"));
    }
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    serde_json::to_value(yaml).map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
}

/// Whether `text` defines a YAML anchor: `&name` where a node can start (line start, after a space,
/// `[`, `{` or `,`). Prose such as "R&D" or "a & b" is not an anchor.
fn has_anchor(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(2).enumerate().any(|(i, w)| {
        w[0] == b'&'
            && (w[1].is_ascii_alphanumeric() || w[1] == b'_')
            && (i == 0 || matches!(bytes[i - 1], b' ' | b'\n' | b'\t' | b'[' | b'{' | b','))
    })
}

fn depth(v: &Value) -> usize {
    // Iterative, so that a hostile document cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        if d > MAX_DEPTH {
            break;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// A JSON response.
pub fn json_response(code: StatusCode, value: &Value, warnings: &[String]) -> axum::response::Response {
    json_bytes_response(code, super::json::to_json(value), warnings)
}

/// A JSON response of already encoded `body`.
pub fn json_bytes_response(code: StatusCode, body: Vec<u8>, warnings: &[String]) -> axum::response::Response {
    let mut builder = http::Response::builder().status(code).header(http::header::CONTENT_TYPE, "application/json");
    for w in warnings {
        builder = builder.header("Warning", format!("299 - {w:?}"));
    }
    builder.body(axum::body::Body::from(body)).unwrap_or_else(|_| ApiError::internal("response").into_response_body())
}

impl ApiError {
    fn into_response_body(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

/// The PartialObjectMetadata of `obj`.
pub fn partial(obj: &Value, beta: bool) -> Value {
    partial_of_metadata(obj.get("metadata").cloned().unwrap_or(json!({})), beta)
}

/// A PartialObjectMetadata of `metadata`.
pub fn partial_of_metadata(metadata: Value, beta: bool) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": if beta { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": metadata,
    })
}

/// How rows carry their object (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> ApiResult<IncludeObject> {
        match s.unwrap_or("Metadata") {
            "None" => Ok(IncludeObject::None),
            "Metadata" | "" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            other => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"None\", \"Metadata\", \"Object\""
            ))),
        }
    }
}

/// Renders objects as a Table; `with_columns` false leaves the column definitions out (watch events
/// after the first).
pub fn table(
    res: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    beta: bool,
    with_columns: bool,
    list_meta: Value,
) -> Value {
    let now = jiff::Timestamp::now();
    let columns: Vec<Value> = if with_columns {
        table::columns(res.group, res.kind)
            .iter()
            .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect()
    } else {
        vec![]
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = json!({"cells": table::cells(res.group, res.kind, obj, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Object => row["object"] = obj.clone(),
                IncludeObject::Metadata => row["object"] = partial(obj, false),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": if beta { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, accept.parse().expect("header"));
        h
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(output(&headers(accept)).expect("ok"), Output::Table { beta: false });
        assert_eq!(output(&headers("application/json")).expect("ok"), Output::Json);
        assert!(output(&headers("application/json;as=Table;v=v9;g=meta.k8s.io")).is_err());
    }

    #[test]
    fn bodies_are_bounded() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(decode_body(&HeaderMap::new(), &Bytes::from(deep)).is_err());
        let yaml_bomb = "a: &a [1]\nb: *a\n";
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, "application/yaml".parse().expect("ct"));
        assert!(decode_body(&h, &Bytes::from(yaml_bomb)).is_err());
        assert_eq!(decode_body(&h, &Bytes::from("a: 1\n")).expect("yaml")["a"], 1);
        let prose = "data:\n  notes: |\n    * R&D and a & b\n    - *not an alias here\n";
        assert_eq!(
            decode_body(&h, &Bytes::from(prose)).expect("prose")["data"]["notes"],
            "* R&D and a & b\n- *not an alias here\n"
        );
    }
}
