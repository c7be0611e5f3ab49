//! Unit tests for the name and value validators: exact upstream messages and
//! the 15/63/253 length boundaries.

use super::*;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QNAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn regex_error_format() {
    assert_eq!(regex_error("m", "re", &[]), "m (regex used for validation is 're')");
    assert_eq!(regex_error("m", "re", &["a", "b"]), "m (e.g. 'a',  or 'b', regex used for validation is 're')");
}

#[test]
fn dns1123_subdomain() {
    for ok in ["a", "ab", "a-b", "0", "a.b", "a.b.c-d", "1.2.3.4", &"a".repeat(253)] {
        assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
    }
    for bad in ["", "A", "-a", "a-", "a..b", ".a", "a.", "a_b", "a b", "é", "a\n", "a.-b"] {
        assert_eq!(is_dns1123_subdomain(bad), s(&[SUBDOMAIN_MSG]), "{bad:?}");
    }
    assert_eq!(is_dns1123_subdomain(&"a".repeat(254)), s(&["must be no more than 253 characters"]));
    assert_eq!(
        is_dns1123_subdomain(&format!("-{}", "a".repeat(253))),
        s(&["must be no more than 253 characters", SUBDOMAIN_MSG])
    );
}

#[test]
fn dns1123_label() {
    for ok in ["a", "0", "a-b", "1-2-3", &"a".repeat(63)] {
        assert!(is_dns1123_label(ok).is_empty(), "{ok}");
    }
    for bad in ["", "A", "-", "a-", "-a", "a_b", "a..b", ".a"] {
        assert_eq!(is_dns1123_label(bad), s(&[LABEL_MSG]), "{bad:?}");
    }
    assert_eq!(is_dns1123_label("a.b"), s(&["must not contain dots"]));
    assert_eq!(is_dns1123_label(&"a".repeat(64)), s(&["must be no more than 63 characters"]));
}

#[test]
fn dns1035_label() {
    for ok in ["a", "a0", "a-b", &"a".repeat(63)] {
        assert!(is_dns1035_label(ok).is_empty(), "{ok}");
    }
    for bad in ["", "0a", "1", "a-", "A", "a.b", "-a"] {
        assert_eq!(is_dns1035_label(bad), s(&[DNS1035_MSG]), "{bad:?}");
    }
    assert_eq!(is_dns1035_label(&"a".repeat(64)), s(&["must be no more than 63 characters"]));
}

#[test]
fn qualified_name() {
    for ok in [
        "simple",
        "now-with-dashes",
        "1-starts-with-num",
        "1234",
        "simple/simple",
        "now-with-dashes/simple",
        "example.com/Upper_Case.Name",
        "a",
        &"a".repeat(63),
        &format!("{}/{}", "a".repeat(253), "b".repeat(63)),
    ] {
        assert!(is_qualified_name(ok).is_empty(), "{ok}");
    }
    for bad in ["nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "Tama-nui-te-rā", "a b"] {
        assert_eq!(is_qualified_name(bad), s(&[QNAME_MSG]), "{bad}");
    }
    assert_eq!(is_qualified_name(""), s(&["name part must be non-empty", QNAME_MSG]));
    assert_eq!(is_qualified_name("/"), s(&["prefix part must be non-empty", "name part must be non-empty", QNAME_MSG]));
    assert_eq!(is_qualified_name("Example.com/a"), s(&[&format!("prefix part {SUBDOMAIN_MSG}")]));
    assert_eq!(is_qualified_name(&"a".repeat(64)), s(&["name part must be no more than 63 characters"]));
    assert_eq!(
        is_qualified_name(&format!("{}/a", "a".repeat(254))),
        s(&["prefix part must be no more than 253 characters"])
    );
    assert_eq!(
        is_qualified_name("a/b/c"),
        s(&["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"])
    );
}

#[test]
fn label_value() {
    for ok in
        ["", "simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "A.b_C-9", &"a".repeat(63)]
    {
        assert!(is_valid_label_value(ok).is_empty(), "{ok}");
    }
    for bad in ["nospecialchars%^=@", "Tama-nui-te-rā", "Bad!", "-a", "a-", "_a", "a b", "a/b"] {
        assert_eq!(is_valid_label_value(bad), s(&[VALUE_MSG]), "{bad}");
    }
    assert_eq!(is_valid_label_value(&"a".repeat(64)), s(&["must be no more than 63 characters"]));
    assert_eq!(
        is_valid_label_value(&format!("{}-", "a".repeat(63))),
        s(&["must be no more than 63 characters", VALUE_MSG])
    );
}

#[test]
fn port_name() {
    for ok in ["telnet", "re-mail-ck", "pop3", "a", "a-1", "1-a", "a-1-b-2-c", "1-a-2-b-3", "abcdefghijklmno"] {
        assert!(is_valid_port_name(ok).is_empty(), "{ok}");
    }
    assert_eq!(is_valid_port_name("longerthan15characters"), s(&["must be no more than 15 characters"]));
    assert_eq!(
        is_valid_port_name(""),
        s(&[
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "must contain at least one letter (a-z)"
        ])
    );
    assert_eq!(is_valid_port_name("12345"), s(&["must contain at least one letter (a-z)"]));
    assert_eq!(is_valid_port_name("a--b"), s(&["must not contain consecutive hyphens"]));
    assert_eq!(is_valid_port_name("-ab"), s(&["must not begin or end with a hyphen"]));
    assert_eq!(is_valid_port_name("ab-"), s(&["must not begin or end with a hyphen"]));
    assert_eq!(
        is_valid_port_name("Abc"),
        s(&["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"])
    );
}

#[test]
fn object_names() {
    use NameRule::*;
    assert!(validate_object_name("my.config", Dns1123Subdomain).is_empty());
    assert_eq!(validate_object_name("My", Dns1123Subdomain), s(&[SUBDOMAIN_MSG]));
    assert_eq!(validate_object_name("", Dns1123Subdomain), s(&[SUBDOMAIN_MSG]));
    assert_eq!(validate_object_name("a.b", Dns1123Label), s(&["must not contain dots"]));
    assert_eq!(validate_object_name("1svc", Dns1035Label), s(&[DNS1035_MSG]));
    assert!(validate_object_name("system:controller:foo", PathSegment).is_empty());
    assert!(validate_object_name("Any Thing!", PathSegment).is_empty());
    assert_eq!(validate_object_name(".", PathSegment), s(&["may not be '.'"]));
    assert_eq!(validate_object_name("..", PathSegment), s(&["may not be '..'"]));
    assert_eq!(validate_object_name("a/b%c", PathSegment), s(&["may not contain '/'", "may not contain '%'"]));
    assert_eq!(validate_object_name("%", PathSegment), s(&["may not contain '%'"]));
}

#[test]
fn generate_names() {
    use NameRule::*;
    assert!(validate_generate_name("foo-", Dns1123Subdomain).is_empty());
    assert!(validate_generate_name("foo-", Dns1123Label).is_empty());
    assert!(validate_generate_name("foo-", Dns1035Label).is_empty());
    assert!(validate_generate_name("a-", Dns1123Label).is_empty());
    assert!(validate_generate_name("foo", Dns1123Subdomain).is_empty());
    // A lone '-' is not masked.
    assert_eq!(validate_generate_name("-", Dns1123Label), s(&[LABEL_MSG]));
    assert_eq!(validate_generate_name("Foo-", Dns1123Subdomain), s(&[SUBDOMAIN_MSG]));
    assert!(validate_generate_name("foo--", Dns1123Label).is_empty());
    assert_eq!(validate_generate_name("-foo-", Dns1123Label), s(&[LABEL_MSG]));
    // The trailing dash costs nothing: 63 + '-' passes, 64 + '-' does not.
    assert!(validate_generate_name(&format!("{}-", "a".repeat(63)), Dns1123Label).is_empty());
    assert_eq!(
        validate_generate_name(&format!("{}-", "a".repeat(64)), Dns1123Label),
        s(&["must be no more than 63 characters"])
    );
    assert!(validate_generate_name(&format!("{}-", "a".repeat(253)), Dns1123Subdomain).is_empty());
    // Path segments: '.' and '..' are fine as prefixes, '/' and '%' are not.
    assert!(validate_generate_name("..", PathSegment).is_empty());
    assert_eq!(validate_generate_name("a/", PathSegment), s(&["may not contain '/'"]));
    // Multi-byte input never panics.
    assert_eq!(validate_generate_name("é-", Dns1123Subdomain), s(&[SUBDOMAIN_MSG]));
    assert_eq!(validate_generate_name("-é", Dns1123Label), s(&[LABEL_MSG]));
}
