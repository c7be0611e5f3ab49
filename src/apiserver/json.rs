//! Objects as JSON bytes: serialization with `apiVersion`, `kind` and `metadata` first (as upstream
//! orders them), and the resourceVersion spliced into stored JSON without parsing it, so that a write's
//! response and a watch event reuse the bytes the store holds instead of serializing the object again.

use serde_json::Value;

/// Top-level fields written first, in this order; the rest follow in map order.
const LEADING: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Serializes `value` through a per-thread buffer that keeps its capacity, then copies it out at its
/// exact size: one allocation per document instead of one per doubling of a growing buffer.
pub fn to_json(value: &Value) -> Vec<u8> {
    /// A buffer grown past this (a large list) is given back rather than kept by the thread.
    const KEEP: usize = 256 << 10;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        write_ordered(buf, value);
        let out = buf.to_vec();
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        out
    })
}

fn write_ordered(buf: &mut Vec<u8>, value: &Value) {
    // A serde_json::Value always serializes: its map keys are strings and it holds no NaN.
    let Value::Object(map) = value else {
        let _ = serde_json::to_writer(&mut *buf, value);
        return;
    };
    let leading = LEADING.iter().filter_map(|k| map.get_key_value(*k));
    let rest = map.iter().filter(|(k, _)| !LEADING.contains(&k.as_str()));
    buf.push(b'{');
    for (i, (key, field)) in leading.chain(rest).enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let _ = serde_json::to_writer(&mut *buf, key);
        buf.push(b':');
        let _ = serde_json::to_writer(&mut *buf, field);
    }
    buf.push(b'}');
}

/// `stored` (an object's JSON without resourceVersion) with `"resourceVersion":"<revision>"` added to
/// its metadata. None when `stored` has no top-level metadata object (the caller then re-encodes).
pub fn with_revision(stored: &[u8], revision: i64) -> Option<Vec<u8>> {
    let at = metadata_body(stored)?;
    let field = format!("\"resourceVersion\":\"{revision}\"");
    let empty = stored.get(skip_space(stored, at)) == Some(&b'}');
    let mut out = Vec::with_capacity(stored.len() + field.len() + 1);
    out.extend_from_slice(&stored[..at]);
    out.extend_from_slice(field.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&stored[at..]);
    Some(out)
}

/// The offset just inside the `{` of the top-level `metadata` object.
fn metadata_body(json: &[u8]) -> Option<usize> {
    let mut at = skip_space(json, 0);
    if json.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_space(json, at);
        let key_end = string_end(json, at)?;
        let key = &json[at..key_end];
        at = skip_space(json, key_end);
        if json.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(json, at + 1);
        if key == b"\"metadata\"" {
            return (json.get(at) == Some(&b'{')).then_some(at + 1);
        }
        at = skip_space(json, value_end(json, at)?);
        match json.get(at) {
            Some(b',') => at += 1,
            _ => return None,
        }
    }
}

fn skip_space(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The offset after the string starting at `at` (which must be its opening quote).
fn string_end(json: &[u8], at: usize) -> Option<usize> {
    if json.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match json.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The offset after the JSON value starting at `at`.
fn value_end(json: &[u8], at: usize) -> Option<usize> {
    match json.get(at)? {
        b'"' => string_end(json, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match json.get(i)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = json[at..].iter().position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace());
            Some(at + len.unwrap_or(json.len() - at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_and_metadata_come_first() {
        let obj = json!({"data": {"a": "b"}, "metadata": {"name": "x"}, "kind": "ConfigMap", "apiVersion": "v1"});
        let text = String::from_utf8(to_json(&obj)).expect("utf-8");
        assert_eq!(text, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"b"}}"#);
    }

    #[test]
    fn the_revision_lands_in_metadata_whatever_comes_before_it() {
        let tricky = json!({"a": "\"metadata\":{\\", "b": [{"metadata": {}}, 1.5e3, null, true], "metadata": {}});
        for obj in [tricky, json!({"metadata": {"name": "x", "labels": {"k": "v"}}, "data": {"v": "}"}})] {
            for bytes in
                [to_json(&obj), serde_json::to_vec(&obj).expect("json"), serde_json::to_vec_pretty(&obj).expect("json")]
            {
                let stamped = with_revision(&bytes, 42).expect("metadata found");
                let back: Value = serde_json::from_slice(&stamped).expect("still JSON");
                let mut expected = obj.clone();
                expected["metadata"]["resourceVersion"] = json!("42");
                assert_eq!(back, expected);
            }
        }
    }

    #[test]
    fn without_a_metadata_object_there_is_nothing_to_splice() {
        for bytes in [&b"[]"[..], b"{\"metadata\":null}", b"{\"a\":1}", b"{\"a\":", b"{\"a\":\"unterminated"] {
            assert_eq!(with_revision(bytes, 1), None, "{}", String::from_utf8_lossy(bytes));
        }
    }
}
