//! Messages whose JSON is not an object of their fields, decoded as Go's MarshalJSON writes them:
//! meta.v1 Time (RFC 3339, seconds), MicroTime (microseconds) and Duration ("1h2m3s"),
//! resource.Quantity (its string), intstr.IntOrString (number or string), RawExtension / FieldsV1 /
//! apiextensions JSON (the raw JSON they carry), and the JSONSchemaPropsOr* unions.

use serde_json::Value;

use super::message;
use super::schema::{Schema, Special};
use super::wire::{Reader, WireType};
use super::ProtobufError;

/// `time.Time{}` as Unix seconds: Go's zero time, which its JSON writes as null.
const GO_ZERO_TIME: i64 = -62_135_596_800;

pub(super) fn decode(schema: &Schema, special: &Special, data: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let fields = Fields::read(data)?;
    match special {
        Special::Time | Special::MicroTime => {
            let micro = matches!(special, Special::MicroTime);
            if data.is_empty() {
                return Ok(Value::Null);
            }
            time(fields.int(1)?, fields.int(2)?, micro)
        }
        Special::Duration => Ok(Value::String(go_duration(fields.int(1)?))),
        Special::Quantity => match fields.string(1)? {
            None => Ok(Value::String("0".into())),
            Some(q) if q.is_empty() => Err(ProtobufError::malformed("empty quantity")),
            Some(q) => Ok(Value::String(q)),
        },
        Special::IntOrString => match fields.int(1)? {
            0 => Ok(Value::from(fields.int(2)? as i32)),
            1 => Ok(Value::String(fields.string(3)?.unwrap_or_default())),
            other => Err(ProtobufError::malformed(format!("IntOrString of unknown type {other}"))),
        },
        Special::RawJson => match fields.last(1) {
            None | Some((WireType::Len, [])) => Ok(Value::Null),
            Some((WireType::Len, raw)) => match raw.strip_prefix(super::MAGIC) {
                Some(_) => super::decode_at(raw, depth + 1),
                None => serde_json::from_slice(raw)
                    .map_err(|e| ProtobufError::malformed(format!("embedded JSON is invalid: {e}"))),
            },
            Some(_) => Err(wrong_type(1)),
        },
        Special::OrArray(props) => {
            let items = fields.messages(schema, 2, *props, depth)?;
            if !items.is_empty() {
                return Ok(Value::Array(items));
            }
            Ok(fields.messages(schema, 1, *props, depth)?.pop().unwrap_or(Value::Null))
        }
        Special::OrBool(props) => match fields.messages(schema, 2, *props, depth)?.pop() {
            Some(schema) => Ok(schema),
            None => Ok(Value::Bool(fields.int(1)? != 0)),
        },
        Special::OrStringArray(props) => {
            let property = fields.strings(2)?;
            if !property.is_empty() {
                return Ok(Value::Array(property.into_iter().map(Value::String).collect()));
            }
            Ok(fields.messages(schema, 1, *props, depth)?.pop().unwrap_or(Value::Null))
        }
    }
}

/// A small message's fields as (number, wire type, raw value) in wire order.
struct Fields<'a>(Vec<(u32, WireType, &'a [u8], u64)>);

impl<'a> Fields<'a> {
    fn read(data: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut out = Vec::new();
        let mut reader = Reader::new(data);
        while !reader.is_empty() {
            let (number, wire_type) = reader.key().map_err(ProtobufError::malformed)?;
            let entry = match wire_type {
                WireType::Varint => (number, wire_type, &[][..], reader.varint()),
                WireType::Len => (number, wire_type, reader.bytes().map_err(ProtobufError::malformed)?, Ok(0)),
                _ => (number, wire_type, &[][..], reader.skip(wire_type).map(|()| 0)),
            };
            out.push((entry.0, entry.1, entry.2, entry.3.map_err(ProtobufError::malformed)?));
        }
        Ok(Fields(out))
    }

    fn last(&self, number: u32) -> Option<(WireType, &'a [u8])> {
        self.0.iter().rev().find(|f| f.0 == number).map(|f| (f.1, f.2))
    }

    /// The last varint of field `number`, or 0.
    fn int(&self, number: u32) -> Result<i64, ProtobufError> {
        match self.0.iter().rev().find(|f| f.0 == number) {
            None => Ok(0),
            Some(&(_, WireType::Varint, _, value)) => Ok(value as i64),
            Some(_) => Err(wrong_type(number)),
        }
    }

    fn string(&self, number: u32) -> Result<Option<String>, ProtobufError> {
        match self.last(number) {
            None => Ok(None),
            Some((WireType::Len, raw)) => Ok(Some(String::from_utf8_lossy(raw).into_owned())),
            Some(_) => Err(wrong_type(number)),
        }
    }

    fn strings(&self, number: u32) -> Result<Vec<String>, ProtobufError> {
        self.0
            .iter()
            .filter(|f| f.0 == number)
            .map(|&(_, wire_type, raw, _)| match wire_type {
                WireType::Len => Ok(String::from_utf8_lossy(raw).into_owned()),
                _ => Err(wrong_type(number)),
            })
            .collect()
    }

    fn messages(&self, schema: &Schema, number: u32, index: usize, depth: usize) -> Result<Vec<Value>, ProtobufError> {
        self.0
            .iter()
            .filter(|f| f.0 == number)
            .map(|&(_, wire_type, raw, _)| match wire_type {
                WireType::Len => message::decode(schema, index, raw, depth + 1),
                _ => Err(wrong_type(number)),
            })
            .collect()
    }
}

fn wrong_type(number: u32) -> ProtobufError {
    ProtobufError::malformed(format!("field {number} has the wrong wire type"))
}

/// Go's `metav1.Time` (whole seconds; its protobuf decoder drops the nanoseconds) or `MicroTime`
/// (nanoseconds truncated to microseconds), in UTC.
fn time(seconds: i64, nanos: i64, micro: bool) -> Result<Value, ProtobufError> {
    let nanos = if micro { (nanos as i32 as i64) - (nanos as i32 as i64) % 1000 } else { 0 };
    let seconds = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or_else(|| ProtobufError::malformed("time out of range"))?;
    let nanos = nanos.rem_euclid(1_000_000_000);
    if seconds == GO_ZERO_TIME && nanos == 0 {
        return Ok(Value::Null);
    }
    let ts = jiff::Timestamp::from_second(seconds)
        .map_err(|e| ProtobufError::malformed(format!("time out of range: {e}")))?;
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(Value::String(if micro { format!("{base}.{:06}Z", nanos / 1000) } else { format!("{base}Z") }))
}

/// Go's `time.Duration.String()`: "0s", "1.5µs", "300ms", "1h0m0.5s", "-2m3s".
fn go_duration(nanos: i64) -> String {
    let u = nanos.unsigned_abs();
    let sign = if nanos < 0 { "-" } else { "" };
    let body = if u == 0 {
        "0s".to_string()
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", fraction(u, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", fraction(u, 6))
    } else {
        let seconds = u / 1_000_000_000;
        let mut out = String::new();
        if seconds >= 3600 {
            out.push_str(&format!("{}h", seconds / 3600));
        }
        if seconds >= 60 {
            out.push_str(&format!("{}m", seconds / 60 % 60));
        }
        let sub = u % 1_000_000_000 + (seconds % 60) * 1_000_000_000;
        out.push_str(&format!("{}s", fraction(sub, 9)));
        out
    };
    format!("{sign}{body}")
}

/// `value / 10^digits` with the fraction's trailing zeros (and a bare point) removed.
fn fraction(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let frac = format!("{:0width$}", value % scale, width = digits as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}", value / scale)
    } else {
        format!("{}.{frac}", value / scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_000_000_000, "1s"),
            (90_500_000_000, "1m30.5s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_000, "1h2m3s"),
            (-123_000_000_000, "-2m3s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, expected) in cases {
            assert_eq!(go_duration(nanos), expected, "{nanos}");
        }
    }

    #[test]
    fn times_print_like_go() {
        assert_eq!(time(0, 999, false).ok(), Some(Value::String("1970-01-01T00:00:00Z".into())));
        assert_eq!(time(-1, 0, false).ok(), Some(Value::String("1969-12-31T23:59:59Z".into())));
        assert_eq!(time(GO_ZERO_TIME, 0, false).ok(), Some(Value::Null));
        assert_eq!(time(GO_ZERO_TIME + 1, 0, false).ok(), Some(Value::String("0001-01-01T00:00:01Z".into())));
        assert_eq!(time(10, 1_999, true).ok(), Some(Value::String("1970-01-01T00:00:10.000001Z".into())));
        assert_eq!(time(10, -1_500, true).ok(), Some(Value::String("1970-01-01T00:00:09.999999Z".into())));
        assert!(time(i64::MAX, 0, false).is_err());
        assert!(time(i64::MAX, 1_000_000_000, true).is_err());
    }
}
