//! The message table: schema.json (written by scripts/gen-protobuf-schema.py) parsed once into
//! messages addressed by index, each with its fields sorted by number, and the map from
//! "apiVersion/kind" to the top-level message.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

const SCHEMA_JSON: &str = include_str!("schema.json");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Double,
    Float,
}

impl Scalar {
    fn parse(name: &str) -> Option<Scalar> {
        Some(match name {
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            "bool" => Scalar::Bool,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "sint32" => Scalar::Sint32,
            "sint64" => Scalar::Sint64,
            "fixed32" => Scalar::Fixed32,
            "fixed64" => Scalar::Fixed64,
            "sfixed32" => Scalar::Sfixed32,
            "sfixed64" => Scalar::Sfixed64,
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub(super) enum Type {
    Scalar(Scalar),
    /// An index into [`Schema::messages`].
    Message(usize),
    /// A map field: repeated entries {key = 1, value = 2}.
    Map(Scalar, Box<Type>),
}

#[derive(Debug)]
pub(super) struct Field {
    pub number: u32,
    pub name: String,
    pub ty: Type,
    pub repeated: bool,
    /// A non-pointer `omitempty` scalar: Go's JSON leaves it out when zero, so the decoder does too.
    pub omit_zero: bool,
    /// A pointer, slice or map without `omitempty`: Go's JSON writes `null` when it is nil.
    pub null_when_absent: bool,
    /// An embedded struct whose fields JSON flattens into the parent object.
    pub inline: bool,
    /// The message is a Go named slice (`type ExtraValue []string`): its JSON is this field alone.
    pub unwrap: bool,
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Debug)]
pub(super) enum Special {
    Time,
    MicroTime,
    Duration,
    Quantity,
    IntOrString,
    /// A bytes field 1 holding JSON: RawExtension, FieldsV1, apiextensions' JSON.
    RawJson,
    /// apiextensions' JSONSchemaPropsOr{Array,Bool,StringArray}, with JSONSchemaProps' index.
    OrArray(usize),
    OrBool(usize),
    OrStringArray(usize),
}

#[derive(Debug)]
pub(super) enum Body {
    Fields(Vec<Field>),
    Special(Special),
}

#[derive(Debug)]
pub(super) struct Message {
    pub body: Body,
}

impl Message {
    pub(super) fn field(&self, number: u32) -> Option<&Field> {
        match &self.body {
            Body::Fields(fields) => fields.binary_search_by_key(&number, |f| f.number).ok().and_then(|i| fields.get(i)),
            Body::Special(_) => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Schema {
    pub messages: Vec<Message>,
    kinds: HashMap<String, usize>,
}

impl Schema {
    /// The top-level message of an object of this apiVersion and kind.
    pub(super) fn kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.kinds.get(&format!("{api_version}/{kind}")).copied()
    }

    pub(super) fn message(&self, index: usize) -> Result<&Message, String> {
        self.messages.get(index).ok_or_else(|| format!("message index {index} out of range"))
    }
}

/// The schema, parsed on first use. An error here is a bug in schema.json.
pub(super) fn get() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(SCHEMA_JSON)).as_ref().map_err(Clone::clone)
}

fn parse(text: &str) -> Result<Schema, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let raw = doc.get("messages").and_then(Value::as_object).ok_or("no messages")?;
    let index: HashMap<&str, usize> = raw.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let lookup = |name: &str| index.get(name).copied().ok_or_else(|| format!("unknown message {name}"));
    let mut messages = Vec::with_capacity(raw.len());
    for (name, entry) in raw {
        let body = match entry {
            Value::String(special) => Body::Special(parse_special(special, &lookup)?),
            Value::Array(fields) => {
                let mut fields = fields
                    .iter()
                    .map(|f| parse_field(f, &lookup).map_err(|e| format!("{name}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                fields.sort_by_key(|f| f.number);
                Body::Fields(fields)
            }
            _ => return Err(format!("{name}: neither fields nor a special type")),
        };
        messages.push(Message { body });
    }
    let kinds = doc
        .get("kinds")
        .and_then(Value::as_object)
        .ok_or("no kinds")?
        .iter()
        .map(|(key, name)| Ok((key.clone(), lookup(name.as_str().unwrap_or_default())?)))
        .collect::<Result<_, String>>()?;
    Ok(Schema { messages, kinds })
}

fn parse_special(text: &str, lookup: &dyn Fn(&str) -> Result<usize, String>) -> Result<Special, String> {
    let (kind, props) = text.split_once(' ').unwrap_or((text, ""));
    Ok(match kind {
        "time" => Special::Time,
        "microtime" => Special::MicroTime,
        "duration" => Special::Duration,
        "quantity" => Special::Quantity,
        "intorstring" => Special::IntOrString,
        "rawjson" => Special::RawJson,
        "or-array" => Special::OrArray(lookup(props)?),
        "or-bool" => Special::OrBool(lookup(props)?),
        "or-string-array" => Special::OrStringArray(lookup(props)?),
        _ => return Err(format!("unknown special type {text:?}")),
    })
}

fn parse_type(text: &str, lookup: &dyn Fn(&str) -> Result<usize, String>) -> Result<Type, String> {
    if let Some(name) = text.strip_prefix("message:") {
        return Ok(Type::Message(lookup(name)?));
    }
    if let Some(rest) = text.strip_prefix("map:") {
        let (key, value) = rest.split_once(':').ok_or("map without value type")?;
        let key = Scalar::parse(key).ok_or_else(|| format!("bad map key type {key}"))?;
        return Ok(Type::Map(key, Box::new(parse_type(value, lookup)?)));
    }
    Scalar::parse(text).map(Type::Scalar).ok_or_else(|| format!("unknown type {text}"))
}

fn parse_field(value: &Value, lookup: &dyn Fn(&str) -> Result<usize, String>) -> Result<Field, String> {
    let (Some(number), Some(name), Some(ty), Some(flags)) = (
        value.get(0).and_then(Value::as_u64),
        value.get(1).and_then(Value::as_str),
        value.get(2).and_then(Value::as_str),
        value.get(3).and_then(Value::as_str),
    ) else {
        return Err(format!("malformed field {value}"));
    };
    Ok(Field {
        number: u32::try_from(number).map_err(|e| e.to_string())?,
        name: name.to_string(),
        ty: parse_type(ty, lookup)?,
        repeated: flags.contains('r'),
        omit_zero: flags.contains('o'),
        null_when_absent: flags.contains('n'),
        inline: flags.contains('i'),
        unwrap: flags.contains('u'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_schema_loads() {
        let schema = get().expect("schema.json parses");
        let deployment = schema.kind("apps/v1", "Deployment").expect("Deployment");
        let message = schema.message(deployment).expect("message");
        assert!(matches!(message.field(3), Some(Field { name, repeated: false, .. }) if name == "status"));
        assert_eq!(message.field(1).map(|f| f.name.as_str()), Some("metadata"));
        assert!(schema.kind("v1", "ConfigMap").is_some());
        assert!(schema.kind("v1", "NoSuchKind").is_none());
    }

    #[test]
    fn rejects_broken_schemas() {
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"messages": {"a": [[1, "x", "message:b", ""]]}, "kinds": {}}"#).is_err());
        assert!(parse(r#"{"messages": {"a": "nonsense"}, "kinds": {}}"#).is_err());
        assert!(parse(r#"{"messages": {"a": []}, "kinds": {"v1/A": "b"}}"#).is_err());
    }
}
