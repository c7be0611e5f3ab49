//! Field selector tests: the grammar, escaping, upstream's error messages and
//! matching.

use super::*;

fn parse(s: &str) -> FieldSelector {
    match FieldSelector::parse(s) {
        Ok(f) => f,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn err(s: &str) -> String {
    match FieldSelector::parse(s) {
        Ok(f) => panic!("{s:?} parsed as {f}"),
        Err(e) => e.to_string(),
    }
}

fn req(field: &str, op: FieldOp, value: &str) -> FieldRequirement {
    FieldRequirement { field: field.into(), op, value: value.into() }
}

#[test]
fn operators_and_order() {
    use FieldOp::*;
    assert_eq!(parse("a=b").requirements(), [req("a", Equals, "b")]);
    assert_eq!(parse("a==b").requirements(), [req("a", Equals, "b")]);
    assert_eq!(parse("a!=b").requirements(), [req("a", NotEquals, "b")]);
    assert_eq!(parse("a=").requirements(), [req("a", Equals, "")]);
    assert_eq!(parse("=b").requirements(), [req("", Equals, "b")]);
    assert_eq!(parse("a=b!c").requirements(), [req("a", Equals, "b!c")]);
    assert_eq!(parse("a!b=c").requirements(), [req("a!b", Equals, "c")]);
    assert_eq!(
        parse("status.phase!=Running,metadata.name=foo").requirements(),
        [req("metadata.name", Equals, "foo"), req("status.phase", NotEquals, "Running")]
    );
    // No trimming: spaces stay in the field and value.
    assert_eq!(parse(" a = b").requirements(), [req(" a ", Equals, " b")]);
    assert_eq!(parse("a==b").to_string(), "a=b");
}

#[test]
fn empty_terms() {
    for s in ["", ",", ",,", "=", "=,", "a=b,,"] {
        let f = parse(s);
        assert_eq!(f.is_empty(), !s.contains('a'), "{s:?}");
    }
    assert!(FieldSelector::everything().is_empty());
}

#[test]
fn escaping() {
    // Sorted terms: "k2=v2" comes before "k=...".
    let second = |s: &str| parse(s).requirements()[1].value.clone();
    assert_eq!(second(r"k=\,,k2=v2"), ",");
    assert_eq!(second(r"k=\\,k2=v2"), "\\");
    assert_eq!(second(r"k=\\\,,k2=v2"), "\\,");
    assert_eq!(parse(r"k=\,,k2=v2").requirements()[0], req("k2", FieldOp::Equals, "v2"));
    assert_eq!(parse(r"k=a\=b").requirements()[0].value, "a=b");
    assert_eq!(parse(r"k=ключ\,é").requirements()[0].value, "ключ,é");
    for v in ["", "a", "a,b", "a=b", "\\", "\\,=", "é=é"] {
        let escaped = escape_value(v);
        assert_eq!(unescape_value(&escaped).ok().as_deref(), Some(v), "{v:?}");
        let f = parse(&format!("k={escaped}"));
        assert_eq!(f.requirements()[0].value, v);
        assert_eq!(f.to_string(), format!("k={escaped}"));
    }
}

#[test]
fn errors() {
    assert_eq!(err("a"), "invalid selector: 'a'; can't understand 'a'");
    assert_eq!(err("x=y,abc"), "invalid selector: 'x=y,abc'; can't understand 'abc'");
    assert_eq!(err("a=b=c"), "invalid field selector: unescaped character in value: 61");
    assert_eq!(err("a==b=c"), "invalid field selector: unescaped character in value: 61");
    assert_eq!(err(r"k=\a\b\"), r"invalid field selector: invalid escape sequence: \a");
    assert_eq!(err(r"k=\"), r"invalid field selector: invalid escape sequence: \");
    assert_eq!(err(r"k=\!"), r"invalid field selector: invalid escape sequence: \!");
    assert_eq!(err(r"k=\é"), r"invalid field selector: invalid escape sequence: \é");
    // Terms are checked in sorted order.
    assert_eq!(err("z,a"), "invalid selector: 'z,a'; can't understand 'a'");
}

#[test]
fn matching() {
    let get = |f: &str| match f {
        "metadata.name" => Some("foo".to_string()),
        "metadata.namespace" => Some("default".to_string()),
        _ => None,
    };
    for (s, want) in [
        ("", true),
        ("metadata.name=foo", true),
        ("metadata.name==foo", true),
        ("metadata.name=bar", false),
        ("metadata.name!=bar", true),
        ("metadata.name!=foo", false),
        ("metadata.name=foo,metadata.namespace=default", true),
        ("metadata.name=foo,metadata.namespace!=default", false),
        ("spec.nodeName=", true),
        ("spec.nodeName!=", false),
    ] {
        assert_eq!(parse(s).matches(get), want, "{s:?}");
    }
    let f = parse("a=1,b!=2,a=3");
    assert_eq!(f.requires_exact_match("a"), Some("1"));
    assert_eq!(f.requires_exact_match("b"), None);
}
