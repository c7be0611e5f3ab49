//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`, which
//! kubectl 1.32+ and client-go's typed clientsets send) into the JSON object the same client would
//! have sent as JSON. Responses stay JSON: those clients accept it too.
//!
//! The body is the magic `k8s\x00` followed by a `runtime.Unknown`: typeMeta = 1 {apiVersion = 1,
//! kind = 2}, raw = 2 (the object's own protobuf bytes), contentEncoding = 3 and contentType = 4
//! (both ignored, as upstream's serializer does). The object bytes are proto2 messages generated
//! from the Go structs; `schema.json` (written by scripts/gen-protobuf-schema.py from the k8s-pb
//! crate's Kubernetes 1.35 protos, kubernetes-validate's 1.33 definitions and the Go types) gives
//! every message's field numbers, JSON names and types. Unknown field numbers are skipped; special
//! messages (times, durations, quantities, IntOrString, raw JSON) are decoded in `special`.
//!
//! Zero values. Go's protobuf marshaller always writes non-pointer scalar fields, zero or not
//! (`hostPort: 0`, `generateName: ""`, `status.phase: ""`), while its JSON encoder leaves out the
//! ones tagged `omitempty`. Keeping them would make a protobuf create differ from the JSON one and
//! trip code that reads presence as intent (a `nodePort: 0` is taken as a requested port). So the
//! decoder drops a zero scalar exactly where the schema marks the Go field as a non-pointer
//! `omitempty` one (flag "o", taken from the Go structs), and keeps every other value on the wire:
//! pointer fields (spec.replicas: 0, terminationGracePeriodSeconds: 0, runAsUser: 0,
//! enableServiceLinks: false) survive, as do fields without omitempty (PriorityClass value: 0),
//! which Go's JSON writes even when zero. Non-pointer structs are always on the wire and come out
//! as `{}` (`"status": {}`), a zero Time as `null` (`"creationTimestamp": null`), like Go's JSON.
//! Empty repeated fields and maps, and nil pointers, are absent on the wire and stay absent, except
//! where the Go field lacks omitempty (flag "n"): Go's JSON writes those as `null` when nil
//! (TokenRequest `"audiences": null`), and so does the decoder. Things protobuf cannot tell apart
//! come out one way: an empty list and a nil one alike, an empty list wrapper (`extra: {k: []}`)
//! as `[]`, a Quantity as the string the client sent (not re-canonicalised).
//!
//! Every input is untrusted: truncated varints, lengths past the end, wrong wire types and nesting
//! deeper than 100 messages are errors fit for a 400 response, never panics.

mod message;
mod schema;
mod special;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use wire::{Reader, WireType};

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\x00";

#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf body is empty")]
    Empty,
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    MissingPrefix,
    #[error("the protobuf body names no kind")]
    MissingKind,
    #[error("the protobuf body names no apiVersion")]
    MissingVersion,
    #[error("no kind {kind:?} is registered for version {api_version:?} for protobuf decoding")]
    UnknownKind { api_version: String, kind: String },
    #[error("malformed protobuf body{}: {reason}", if path.is_empty() { String::new() } else { format!(" at {path}") })]
    Malformed { path: String, reason: String },
    #[error("the protobuf schema is unusable: {0}")]
    Schema(String),
}

impl ProtobufError {
    fn malformed(reason: impl Into<String>) -> Self {
        ProtobufError::Malformed { path: String::new(), reason: reason.into() }
    }

    /// Prefixes the path of a malformed-body error with the field it happened in.
    fn within(self, name: &str, inline: bool) -> Self {
        match self {
            ProtobufError::Malformed { path, reason } if !inline => {
                let path = if path.is_empty() { name.to_string() } else { format!("{name}.{path}") };
                ProtobufError::Malformed { path, reason }
            }
            other => other,
        }
    }
}

/// Decodes a Kubernetes protobuf body (magic + runtime.Unknown) into the JSON object it encodes,
/// with `apiVersion` and `kind` set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_at(body, 0)
}

/// `decode` for a body found `depth` messages deep (a RawExtension may hold one).
fn decode_at(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    if body.is_empty() {
        return Err(ProtobufError::Empty);
    }
    let data = body.strip_prefix(MAGIC).ok_or(ProtobufError::MissingPrefix)?;
    if data.is_empty() {
        return Err(ProtobufError::Empty);
    }
    let schema = schema::get().map_err(ProtobufError::Schema)?;
    let (api_version, kind, raw) = envelope(data).map_err(|e| e.within("runtime.Unknown", false))?;
    if kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    if api_version.is_empty() {
        return Err(ProtobufError::MissingVersion);
    }
    let index = schema
        .kind(&api_version, &kind)
        .ok_or_else(|| ProtobufError::UnknownKind { api_version: api_version.clone(), kind: kind.clone() })?;
    let fields = match message::decode(schema, index, raw, depth + 1).map_err(|e| e.within(&kind, false))? {
        Value::Object(fields) => fields,
        _ => return Err(ProtobufError::Schema(format!("{kind} does not decode to an object"))),
    };
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(kind));
    object.insert("apiVersion".into(), Value::String(api_version));
    object.extend(fields);
    Ok(Value::Object(object))
}

/// The apiVersion, kind and object bytes of a `runtime.Unknown`.
fn envelope(data: &[u8]) -> Result<(String, String, &[u8]), ProtobufError> {
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut reader = Reader::new(data);
    while !reader.is_empty() {
        match reader.key().map_err(ProtobufError::malformed)? {
            (1, WireType::Len) => {
                let mut type_meta = Reader::new(reader.bytes().map_err(ProtobufError::malformed)?);
                while !type_meta.is_empty() {
                    match type_meta.key().map_err(ProtobufError::malformed)? {
                        (1, WireType::Len) => api_version = text(&mut type_meta)?,
                        (2, WireType::Len) => kind = text(&mut type_meta)?,
                        (_, wire_type) => type_meta.skip(wire_type).map_err(ProtobufError::malformed)?,
                    }
                }
            }
            (2, WireType::Len) => raw = reader.bytes().map_err(ProtobufError::malformed)?,
            (1 | 2, wire_type) => {
                return Err(ProtobufError::malformed(format!("unexpected {} value", wire_type.name())))
            }
            (_, wire_type) => reader.skip(wire_type).map_err(ProtobufError::malformed)?,
        }
    }
    Ok((api_version, kind, raw))
}

fn text(reader: &mut Reader) -> Result<String, ProtobufError> {
    let bytes = reader.bytes().map_err(ProtobufError::malformed)?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}
