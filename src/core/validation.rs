//! Name and value validators with the exact wording of upstream Kubernetes
//! (k8s.io/apimachinery/pkg/util/validation as of 1.33, plus the object-name
//! rules of pkg/api/validation and pkg/api/validation/path).
//!
//! Every `is_*` function returns the list of problems, empty when the value is
//! valid; the strings are what a user sees after `metadata.name: Invalid value:
//! "...": `. Lengths are counted in bytes, as upstream does. Matching is done by
//! hand, no regex engine is involved, and no input can make these panic.

mod ip;

pub use ip::is_valid_ip;

/// Maximum length of an RFC 1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of an RFC 1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Maximum length of an RFC 1035 label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of the name part of a qualified name (label key).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Maximum length of a label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Upstream's `MaxLenError`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Upstream's `EmptyError`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// Upstream's `RegexError`: the message, the examples and the regex shown.
pub fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{re}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(ex);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(re);
    out.push_str("')");
    out
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `first` and `last` constrain the ends, `mid` the bytes in between; the
/// value must not be empty. This is the shape of every regex used here.
fn shaped(v: &[u8], first: fn(u8) -> bool, mid: fn(u8) -> bool, last: fn(u8) -> bool) -> bool {
    match v {
        [] => false,
        [only] => first(*only) && last(*only),
        [a, inner @ .., z] => first(*a) && last(*z) && inner.iter().all(|b| mid(*b)),
    }
}

fn dns1123_label_match(v: &[u8]) -> bool {
    shaped(v, is_lower_alnum, |b| is_lower_alnum(b) || b == b'-', is_lower_alnum)
}

fn dns1123_subdomain_match(v: &[u8]) -> bool {
    v.split(|b| *b == b'.').all(dns1123_label_match)
}

fn dns1035_label_match(v: &[u8]) -> bool {
    shaped(v, |b| b.is_ascii_lowercase(), |b| is_lower_alnum(b) || b == b'-', is_lower_alnum)
}

fn qualified_name_part_match(v: &[u8]) -> bool {
    shaped(
        v,
        |b| b.is_ascii_alphanumeric(),
        |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'),
        |b| b.is_ascii_alphanumeric(),
    )
}

fn dns1123_label_bytes(v: &[u8]) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !dns1123_label_match(v) {
        if dns1123_subdomain_match(v) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

fn dns1123_subdomain_bytes(v: &[u8]) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !dns1123_subdomain_match(v) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

fn dns1035_label_bytes(v: &[u8]) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !dns1035_label_match(v) {
        errs.push(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// A lowercase RFC 1123 label (namespaces, most DNS-label names).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    dns1123_label_bytes(value.as_bytes())
}

/// A lowercase RFC 1123 subdomain (most object names).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    dns1123_subdomain_bytes(value.as_bytes())
}

/// An RFC 1035 label (Service names).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    dns1035_label_bytes(value.as_bytes())
}

/// A qualified name, i.e. a label or annotation key: an optional DNS
/// subdomain prefix and '/', then a name of at most 63 characters.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                for msg in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {msg}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !qualified_name_part_match(name.as_bytes()) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// A label value: empty, or at most 63 characters shaped like a qualified
/// name part.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !qualified_name_part_match(value.as_bytes()) {
        errs.push(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// An IANA service (port) name: 1-15 of `[-a-z0-9]`, at least one letter, no
/// leading, trailing or doubled hyphen.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let b = port.as_bytes();
    let mut errs = Vec::new();
    if b.len() > 15 {
        errs.push(max_len_error(15));
    }
    if b.is_empty() || !b.iter().all(|c| is_lower_alnum(*c) || *c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !b.iter().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if b.first() == Some(&b'-') || b.last() == Some(&b'-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Upstream's `IsValidPathSegmentName`: the name may be used as a URL path
/// segment. Empty names and lengths are not checked, as upstream.
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    is_valid_path_segment_prefix(name)
}

/// Upstream's `IsValidPathSegmentPrefix`: like the name rule, minus the
/// exact-match checks (a suffix will be appended).
pub fn is_valid_path_segment_prefix(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|illegal| name.contains(**illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

/// Which rule an object kind's `metadata.name` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameRule {
    /// Most kinds (ConfigMap, Secret, Deployment, Node, ...).
    Dns1123Subdomain,
    /// Namespaces and a few others.
    Dns1123Label,
    /// Services.
    Dns1035Label,
    /// Kinds whose names only need to be safe URL path segments (RBAC roles
    /// and bindings, ...).
    PathSegment,
}

/// Upstream's `maskTrailingDash`: for a generateName prefix a trailing '-' is
/// tolerated. Upstream drops the last two bytes and appends 'a', which keeps
/// the length one short of the input; that is reproduced byte for byte.
fn mask_trailing_dash(name: &[u8]) -> Vec<u8> {
    if name.len() > 1 && name.last() == Some(&b'-') {
        let mut out = name[..name.len() - 2].to_vec();
        out.push(b'a');
        out
    } else {
        name.to_vec()
    }
}

fn name_rule(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let bytes = if prefix { mask_trailing_dash(name.as_bytes()) } else { name.as_bytes().to_vec() };
    match rule {
        NameRule::Dns1123Subdomain => dns1123_subdomain_bytes(&bytes),
        NameRule::Dns1123Label => dns1123_label_bytes(&bytes),
        NameRule::Dns1035Label => dns1035_label_bytes(&bytes),
        NameRule::PathSegment if prefix => is_valid_path_segment_prefix(name),
        NameRule::PathSegment => is_valid_path_segment_name(name),
    }
}

/// Problems with a `metadata.name` under `rule`. The caller reports an empty
/// name without generateName itself (upstream: `Required value: name or
/// generateName is required`).
pub fn validate_object_name(name: &str, rule: NameRule) -> Vec<String> {
    name_rule(rule, name, false)
}

/// Problems with a `metadata.generateName` prefix under `rule`: a trailing
/// '-' is tolerated, and path-segment kinds skip the '.'/'..' checks.
pub fn validate_generate_name(generate_name: &str, rule: NameRule) -> Vec<String> {
    name_rule(rule, generate_name, true)
}

#[cfg(test)]
mod tests;
