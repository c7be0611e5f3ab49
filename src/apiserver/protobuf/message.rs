//! The schema-driven walk from a message's bytes to its JSON: scalars, repeated fields (packed or
//! not), map entries, embedded and inline messages, zero-value dropping, and the depth cap. Special
//! messages (times, quantities, ...) are handed to `special`.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::schema::{Body, Field, Scalar, Schema, Type};
use super::special;
use super::wire::{Reader, WireType};
use super::ProtobufError;

/// How deep messages may nest before the body is refused (real objects stay under 20).
pub(super) const MAX_DEPTH: usize = 100;

/// The JSON of message `index` encoded in `data`; `depth` counts the messages around it.
pub(super) fn decode(schema: &Schema, index: usize, data: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::malformed(format!("messages nested deeper than {MAX_DEPTH} levels")));
    }
    let message = schema.message(index).map_err(ProtobufError::Schema)?;
    let fields = match &message.body {
        Body::Special(special) => return special::decode(schema, special, data, depth),
        Body::Fields(fields) => fields,
    };
    let mut object = Map::new();
    let mut reader = Reader::new(data);
    while !reader.is_empty() {
        let (number, wire_type) = reader.key().map_err(ProtobufError::malformed)?;
        match message.field(number) {
            None => reader.skip(wire_type).map_err(ProtobufError::malformed)?,
            Some(field) => read_field(schema, field, wire_type, &mut reader, &mut object, depth)
                .map_err(|e| e.within(&field.name, field.inline))?,
        }
    }
    for field in fields.iter().filter(|f| f.null_when_absent) {
        object.entry(field.name.as_str()).or_insert(Value::Null);
    }
    if let Some(field) = fields.iter().find(|f| f.unwrap) {
        return Ok(object.remove(&field.name).unwrap_or_else(|| Value::Array(Vec::new())));
    }
    Ok(Value::Object(object))
}

fn read_field(
    schema: &Schema,
    field: &Field,
    wire_type: WireType,
    reader: &mut Reader,
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtobufError> {
    match &field.ty {
        Type::Map(key_type, value_type) => {
            let entry = expect_len(wire_type, reader)?;
            let (key, value) = map_entry(schema, *key_type, value_type, entry, depth)?;
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            if let Value::Object(map) = object.entry(field.name.as_str()).or_insert_with(|| Value::Object(Map::new())) {
                map.insert(key, value);
            }
        }
        Type::Message(index) => {
            let value = decode(schema, *index, expect_len(wire_type, reader)?, depth + 1)?;
            if field.repeated {
                push(object, &field.name, value);
            } else if field.inline {
                if let Value::Object(inner) = value {
                    object.extend(inner);
                }
            } else {
                match (object.get_mut(&field.name), value) {
                    // A message field seen twice merges, as protobuf specifies.
                    (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                    (_, value) => {
                        object.insert(field.name.clone(), value);
                    }
                }
            }
        }
        Type::Scalar(scalar) if field.repeated => {
            if wire_type == WireType::Len && !matches!(scalar, Scalar::String | Scalar::Bytes) {
                let mut packed = Reader::new(reader.bytes().map_err(ProtobufError::malformed)?);
                while !packed.is_empty() {
                    push(object, &field.name, read_scalar(*scalar, scalar_wire_type(*scalar), &mut packed)?);
                }
            } else {
                push(object, &field.name, read_scalar(*scalar, wire_type, reader)?);
            }
        }
        Type::Scalar(scalar) => {
            let value = read_scalar(*scalar, wire_type, reader)?;
            if field.omit_zero && is_zero(&value) {
                object.remove(&field.name);
            } else {
                object.insert(field.name.clone(), value);
            }
        }
    }
    Ok(())
}

/// One entry of a map field: key = 1, value = 2, each defaulting to its zero value when absent.
fn map_entry(
    schema: &Schema,
    key_type: Scalar,
    value_type: &Type,
    data: &[u8],
    depth: usize,
) -> Result<(Value, Value), ProtobufError> {
    let (mut key, mut value) = (None, None);
    let mut reader = Reader::new(data);
    while !reader.is_empty() {
        match reader.key().map_err(ProtobufError::malformed)? {
            (1, wire_type) => key = Some(read_scalar(key_type, wire_type, &mut reader)?),
            (2, wire_type) => {
                value = Some(match value_type {
                    Type::Scalar(scalar) => read_scalar(*scalar, wire_type, &mut reader)?,
                    Type::Message(index) => decode(schema, *index, expect_len(wire_type, &mut reader)?, depth + 1)?,
                    Type::Map(..) => return Err(ProtobufError::Schema("map of maps".into())),
                })
            }
            (_, wire_type) => reader.skip(wire_type).map_err(ProtobufError::malformed)?,
        }
    }
    let value = match (value, value_type) {
        (Some(value), _) => value,
        (None, Type::Scalar(scalar)) => zero(*scalar),
        (None, Type::Message(index)) => decode(schema, *index, &[], depth + 1)?,
        (None, Type::Map(..)) => Value::Null,
    };
    Ok((key.unwrap_or_else(|| zero(key_type)), value))
}

fn push(object: &mut Map<String, Value>, name: &str, value: Value) {
    match object.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(items) => items.push(value),
        other => *other = Value::Array(vec![value]),
    }
}

fn expect_len<'a>(wire_type: WireType, reader: &mut Reader<'a>) -> Result<&'a [u8], ProtobufError> {
    if wire_type != WireType::Len {
        return Err(ProtobufError::malformed(format!("expected a length-delimited value, found {}", wire_type.name())));
    }
    reader.bytes().map_err(ProtobufError::malformed)
}

fn scalar_wire_type(scalar: Scalar) -> WireType {
    match scalar {
        Scalar::String | Scalar::Bytes => WireType::Len,
        Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => WireType::Fixed32,
        Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => WireType::Fixed64,
        _ => WireType::Varint,
    }
}

/// One scalar value as Go's JSON encoder would write it (bytes as standard base64).
pub(super) fn read_scalar(scalar: Scalar, wire_type: WireType, reader: &mut Reader) -> Result<Value, ProtobufError> {
    let expected = scalar_wire_type(scalar);
    if wire_type != expected {
        return Err(ProtobufError::malformed(format!(
            "expected {} for a {scalar:?} value, found {}",
            expected.name(),
            wire_type.name()
        )));
    }
    let m = ProtobufError::malformed;
    Ok(match scalar {
        Scalar::String => Value::String(String::from_utf8_lossy(reader.bytes().map_err(m)?).into_owned()),
        Scalar::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(reader.bytes().map_err(m)?)),
        Scalar::Bool => Value::Bool(reader.varint().map_err(m)? != 0),
        // Truncation to 32 bits is what Go's decoder does with an oversized varint.
        Scalar::Int32 => Value::from(reader.varint().map_err(m)? as i32),
        Scalar::Int64 => Value::from(reader.varint().map_err(m)? as i64),
        Scalar::Uint32 => Value::from(reader.varint().map_err(m)? as u32),
        Scalar::Uint64 => Value::from(reader.varint().map_err(m)?),
        Scalar::Sint32 => {
            let v = reader.varint().map_err(m)? as u32;
            Value::from((v >> 1) as i32 ^ -((v & 1) as i32))
        }
        Scalar::Sint64 => {
            let v = reader.varint().map_err(m)?;
            Value::from((v >> 1) as i64 ^ -((v & 1) as i64))
        }
        Scalar::Fixed32 => Value::from(reader.fixed32().map_err(m)?),
        Scalar::Sfixed32 => Value::from(reader.fixed32().map_err(m)? as i32),
        Scalar::Fixed64 => Value::from(reader.fixed64().map_err(m)?),
        Scalar::Sfixed64 => Value::from(reader.fixed64().map_err(m)? as i64),
        Scalar::Float => float(f64::from(f32::from_bits(reader.fixed32().map_err(m)?)))?,
        Scalar::Double => float(f64::from_bits(reader.fixed64().map_err(m)?))?,
    })
}

fn float(value: f64) -> Result<Value, ProtobufError> {
    Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| ProtobufError::malformed(format!("{value} cannot be represented in JSON")))
}

fn zero(scalar: Scalar) -> Value {
    match scalar {
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Bool => Value::Bool(false),
        Scalar::Float | Scalar::Double => float(0.0).unwrap_or(Value::Null),
        _ => Value::from(0),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}
