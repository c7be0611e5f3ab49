//! Upstream-compatible error text: how Go's field.Error (Kubernetes 1.33),
//! utilerrors.Aggregate, `%q` and `%#v` render the pieces of a selector
//! error, so the messages users see match a real API server's byte for byte.

/// Go's `strconv.Quote` (what `%q` prints). Non-ASCII characters are kept
/// unless they are controls, non-ASCII spaces or invisible format characters,
/// which approximates `unicode.IsPrint`.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c,
            '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
            | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
            | '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..='\u{10ffff}'))
}

/// The bad value of a field error.
pub(super) enum BadValue<'a> {
    /// A Go string, printed with `%q`.
    Str(&'a str),
    /// A Go `[]string`, printed with `%#v` as Kubernetes 1.33 does:
    /// `[]string{"a", "b"}`; `None` is a nil slice, `[]string(nil)`.
    Strings(Option<&'a [String]>),
}

impl BadValue<'_> {
    fn render(&self) -> String {
        match self {
            BadValue::Str(s) => go_quote(s),
            BadValue::Strings(None) => "[]string(nil)".to_string(),
            BadValue::Strings(Some(items)) => {
                let quoted: Vec<String> = items.iter().map(|i| go_quote(i)).collect();
                format!("[]string{{{}}}", quoted.join(", "))
            }
        }
    }
}

/// `field.Invalid(path, value, detail).Error()`.
pub(super) fn invalid(path: &str, value: BadValue<'_>, detail: &str) -> String {
    let mut out = format!("{path}: Invalid value: {}", value.render());
    if !detail.is_empty() {
        out.push_str(": ");
        out.push_str(detail);
    }
    out
}

/// `utilerrors.NewAggregate(errs).Error()`: duplicates dropped, one message
/// alone, several in brackets.
pub(super) fn aggregate(errs: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errs {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [one] => (*one).to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_like_go() {
        assert_eq!(go_quote("a b"), "\"a b\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("\n\t\u{1}\u{7f}"), "\"\\n\\t\\x01\\x7f\"");
        assert_eq!(go_quote("rā"), "\"rā\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), "\"\\u00a0\\u200b\"");
        assert_eq!(go_quote("\u{10ffff}"), "\"\\U0010ffff\"");
    }

    #[test]
    fn bad_values() {
        let v = vec!["a".to_string(), "<b>\"\n\u{1}".to_string()];
        assert_eq!(BadValue::Strings(Some(&v)).render(), r#"[]string{"a", "<b>\"\n\x01"}"#);
        assert_eq!(BadValue::Strings(Some(&[])).render(), "[]string{}");
        assert_eq!(BadValue::Strings(None).render(), "[]string(nil)");
        assert_eq!(invalid("values[0][x]", BadValue::Str("a b"), "bad"), "values[0][x]: Invalid value: \"a b\": bad");
    }

    #[test]
    fn aggregates() {
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }
}
