//! Label selector tests: the grammar (every operator, whitespace, upstream's
//! error messages), matching, the string form, and robustness on arbitrary
//! input. metav1.LabelSelector conversion is tested in `json`.

use serde_json::{json, Map, Value};

use super::*;

const QNAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const OPS: &str = "in, notin, =, ==, !=, gt, lt";

fn labels(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn err(s: &str) -> String {
    match LabelSelector::parse(s) {
        Ok(sel) => panic!("{s:?} parsed as {sel}"),
        Err(e) => e.to_string(),
    }
}

fn sel(s: &str) -> LabelSelector {
    match LabelSelector::parse(s) {
        Ok(sel) => sel,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

#[test]
fn good_strings_round_trip() {
    for s in ["x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1", "x>1,z<5"] {
        assert_eq!(sel(s).to_string(), s.replace(' ', ""), "{s:?}");
    }
    assert_eq!(sel("x=a,a=x").to_string(), sel("a=x,x=a").to_string());
    assert_eq!(sel("b,a").to_string(), "a,b");
}

#[test]
fn every_operator() {
    let cases: &[(&str, Operator, &[&str])] = &[
        ("k", Operator::Exists, &[]),
        ("!k", Operator::DoesNotExist, &[]),
        ("k=v", Operator::Equals, &["v"]),
        ("k==v", Operator::DoubleEquals, &["v"]),
        ("k!=v", Operator::NotEquals, &["v"]),
        ("k in (a,b)", Operator::In, &["a", "b"]),
        ("k notin (a)", Operator::NotIn, &["a"]),
        ("k>5", Operator::GreaterThan, &["5"]),
        ("k<5", Operator::LessThan, &["5"]),
        ("example.com/k=v", Operator::Equals, &["v"]),
    ];
    for (s, op, values) in cases {
        let parsed = sel(s);
        let [r] = parsed.requirements() else {
            panic!("{s}: {:?}", parsed.requirements());
        };
        assert_eq!(r.operator(), *op, "{s}");
        assert_eq!(r.values(), *values, "{s}");
        assert_eq!(r.to_string(), *s, "{s}");
    }
}

#[test]
fn whitespace_and_sets() {
    let s = sel("  a  =  b  ,\tc\tin\t( d , e )\n, \r!f ");
    assert_eq!(s.to_string(), "a=b,c in (d,e),!f");
    assert_eq!(sel("\rx").to_string(), "x");
    assert_eq!(sel("x notin\n (abc)").to_string(), "x notin (abc)");
    let vals = |s: &str| sel(s).requirements()[0].values().to_vec();
    assert_eq!(vals("x in (abc,)"), ["", "abc"]);
    assert_eq!(vals("x in ()"), [""]);
    assert_eq!(vals("x notin ( )"), [""]);
    assert_eq!(vals("x notin (, a)"), ["", "a"]);
    assert_eq!(vals("x in (a,,b)"), ["", "a", "b"]);
    assert_eq!(vals("x in (a,,)"), ["", "a"]);
    assert_eq!(vals("x in (,,)"), [""]);
    assert_eq!(vals("x in (b,a,b)"), ["a", "b"]);
    // 'in' and 'notin' are plain words where no operator is expected.
    assert_eq!(vals("a in (x,y,notin, z,in)"), ["in", "notin", "x", "y", "z"]);
    assert_eq!(sel("in in (in)").to_string(), "in in (in)");
    assert_eq!(sel("notin=in").to_string(), "notin=in");
    assert_eq!(sel("x notin (abc,,def),bar,z in (),w").to_string(), "bar,w,x notin (,abc,def),z in ()");
}

#[test]
fn syntax_errors() {
    let ws = "found '', expected: identifier after ','";
    for (s, want) in [
        ("=x", "found '=', expected: !, identifier, or 'end of string'".to_string()),
        ("(", "found '(', expected: !, identifier, or 'end of string'".into()),
        (",x", "found ',', expected: !, identifier, or 'end of string'".into()),
        ("!=a", "found '!=', expected: !, identifier, or 'end of string'".into()),
        ("x,,y", "found ',', expected: identifier after ','".into()),
        ("a in (xyz),", ws.into()),
        ("a,", ws.into()),
        ("x==a==b", "found '==', expected: ',' or 'end of string'".into()),
        ("!x=a", "found '=', expected: ',' or 'end of string'".into()),
        ("a in (xyz)b notin ()", "found 'b', expected: ',' or 'end of string'".into()),
        ("x=a b", "found 'b', expected: ',' or 'end of string'".into()),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'".into()),
        ("a in (xyz abc)", "unable to parse requirement: found 'abc', expected: ',' or ')'".into()),
        ("a notin(", "unable to parse requirement: found '', expected: ',', ')' or identifier".into()),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier".into()),
        ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier".into()),
        ("a in b", "unable to parse requirement: found 'b' expected: '('".into()),
        ("a (", format!("unable to parse requirement: found '(', expected: {OPS}")),
        ("x nott in (y)", format!("unable to parse requirement: found 'nott', expected: {OPS}")),
        ("a !b", format!("unable to parse requirement: found '!', expected: {OPS}")),
        ("!", "unable to parse requirement: found '', expected: identifier".into()),
        ("!!a", "unable to parse requirement: found '!', expected: identifier".into()),
        ("x=(", "unable to parse requirement: found '(', expected: identifier".into()),
        ("x>=1", "unable to parse requirement: found '=', expected: identifier".into()),
    ] {
        assert_eq!(err(s), want, "{s:?}");
    }
}

#[test]
fn invalid_keys_and_values() {
    let key_err = |k: &str, msg: &str| format!("unable to parse requirement: <nil>: Invalid value: \"{k}\": {msg}");
    assert_eq!(err("A@"), key_err("A@", QNAME_MSG));
    assert_eq!(err("-a=b"), key_err("-a", QNAME_MSG));
    assert_eq!(err("/a"), key_err("/a", "prefix part must be non-empty"));
    assert_eq!(err("a/=b"), key_err("a/", &format!("name part must be non-empty; {QNAME_MSG}")));
    let long = "k".repeat(64);
    assert_eq!(err(&long), key_err(&long, "name part must be no more than 63 characters"));
    assert!(LabelSelector::parse(&"k".repeat(63)).is_ok());
    assert!(
        err("a/b/c").starts_with("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must")
    );
    assert_eq!(err("ключ"), key_err("ключ", QNAME_MSG));

    let val_err =
        |path: &str, v: &str| format!("unable to parse requirement: {path}: Invalid value: \"{v}\": {VALUE_MSG}");
    assert_eq!(err("x=a||y=b"), val_err("values[0][x]", "a||y"));
    assert_eq!(err("x in (ok,-bad)"), val_err("values[0][x]", "-bad"));
    assert_eq!(
        err("x in (-a,_b)"),
        format!(
            "unable to parse requirement: [values[0][x]: Invalid value: \"-a\": {VALUE_MSG}, values[1][x]: Invalid value: \"_b\": {VALUE_MSG}]"
        )
    );
    let v64 = "v".repeat(64);
    assert_eq!(
        err(&format!("x={v64}")),
        format!(
            "unable to parse requirement: values[0][x]: Invalid value: \"{v64}\": must be no more than 63 characters"
        )
    );
    assert!(LabelSelector::parse(&format!("x={}", "v".repeat(63))).is_ok());
    assert_eq!(err("x>-1"), val_err("values[0][x]", "-1"));
    assert_eq!(
        err("x<a"),
        "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
    assert_eq!(
        err("x>"),
        "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
}

#[test]
fn matching() {
    let l = labels(json!({"foo": "bar", "baz": "blah", "n": "7", "p": "+8", "s": "x", "in": "in"}));
    for (s, want) in [
        ("", true),
        ("foo", true),
        ("nope", false),
        ("!nope", true),
        ("!foo", false),
        ("foo=bar", true),
        ("foo==bar", true),
        ("foo=blah", false),
        ("nope=", false),
        ("foo!=bar", false),
        ("foo!=x", true),
        ("nope!=x", true),
        ("foo in (a,bar)", true),
        ("foo in (a,b)", false),
        ("nope in (a,)", false),
        ("foo notin (a,bar)", false),
        ("foo notin (a)", true),
        ("nope notin (a)", true),
        ("n>6", true),
        ("n>7", false),
        ("n<8", true),
        ("n<7", false),
        ("p>7", true),
        ("s>1", false),
        ("s<1", false),
        ("nope<1", false),
        ("foo=bar,baz=blah", true),
        ("foo=bar,foobar=bar,baz=blah", false),
        ("in in (in)", true),
    ] {
        assert_eq!(sel(s).matches(&l), want, "{s:?}");
    }
    // Non-string label values count as absent.
    let odd = labels(json!({"a": 1, "b": null}));
    assert!(sel("!a,!b,a notin (1)").matches(&odd));
    assert!(!sel("a").matches(&odd));
}

#[test]
fn empty_everything_nothing() {
    assert!(sel("").is_empty());
    assert_eq!(err(" , "), "found ',', expected: !, identifier, or 'end of string'");
    assert!(!sel("a").is_empty());
    assert!(LabelSelector::everything().matches(&Map::new()));
    let nothing = LabelSelector::nothing();
    assert!(!nothing.is_empty() && nothing.matches_nothing());
    assert!(!nothing.matches(&Map::new()));
    let s = sel("a=1,b in (2),c in (3,4),d!=5");
    assert_eq!(s.requires_exact_match("a"), Some("1"));
    assert_eq!(s.requires_exact_match("b"), Some("2"));
    assert_eq!(s.requires_exact_match("c"), None);
    assert_eq!(s.requires_exact_match("d"), None);
    assert_eq!(s.requires_exact_match("e"), None);
}

#[test]
fn requirement_constructor() {
    let msg = |r: Result<Requirement, SelectorError>| r.err().map(|e| e.to_string());
    assert_eq!(
        msg(Requirement::new("x1", Operator::In, vec![])).as_deref(),
        Some("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty")
    );
    assert_eq!(
        msg(Requirement::new("x5", Operator::Equals, vec!["bar".into(), "foo".into()])).as_deref(),
        Some("values: Invalid value: []string{\"bar\", \"foo\"}: exact-match compatibility requires one single value")
    );
    assert_eq!(
        msg(Requirement::new("x8", Operator::Exists, vec!["foo".into()])).as_deref(),
        Some("values: Invalid value: []string{\"foo\"}: values set must be empty for exists and does not exist")
    );
    assert_eq!(
        msg(Requirement::new("x13", Operator::GreaterThan, vec![])).as_deref(),
        Some("values: Invalid value: []string{}: for 'Gt', 'Lt' operators, exactly one value is required")
    );
    assert!(msg(Requirement::new(&"a".repeat(254), Operator::Exists, vec![]))
        .is_some_and(|m| m.starts_with("key: Invalid value: \"aaa")));
    assert!(Requirement::new("x", Operator::NotIn, vec!["".into()]).is_ok());
}

/// Every string over a small alphabet of meaningful bytes parses or fails
/// without panicking; so does multi-byte and NUL input.
#[test]
fn never_panics() {
    let alphabet = ["a", "!", "=", "(", ")", ",", " ", "<", ">", "in", "é", "\0", "/", "\\"];
    let mut inputs = vec![String::new()];
    let mut layer = inputs.clone();
    for _ in 0..4 {
        layer = layer.iter().flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}"))).collect();
        inputs.extend(layer.iter().cloned());
    }
    for s in &inputs {
        let _ = LabelSelector::parse(s).map(|l| l.to_string());
        let _ = FieldSelector::parse(s).map(|f| f.to_string());
    }
}
