//! Label selectors: requirements (key, operator, values), their validation
//! with upstream messages (`labels.NewRequirement`), matching against an
//! object's `metadata.labels`, the string form, and conversion from a
//! metav1.LabelSelector JSON object (`metav1.LabelSelectorAsSelector`).

use std::fmt;

use serde_json::{Map, Value};

use super::super::validation::{is_qualified_name, is_valid_label_value};
use super::errtext::{aggregate, invalid, BadValue};
use super::{parser, SelectorError};

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One term of a label selector. Built only through validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Operator,
    values: Vec<String>,
}

/// Problems with a label key (upstream validates keys as qualified names).
pub(super) fn validate_key(key: &str) -> Vec<String> {
    is_qualified_name(key)
}

impl Requirement {
    /// Upstream's `NewRequirement`: validates the key, the value count for the
    /// operator, integer values for `>`/`<`, and every value as a label value.
    pub fn new(key: &str, op: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        Self::build(key.to_string(), op, Some(values)).map_err(SelectorError::Label)
    }

    /// As [`Requirement::new`]; `None` values print as `null` in errors (a Go
    /// nil slice), `Some` as a JSON array.
    pub(super) fn build(key: String, op: Operator, values: Option<Vec<String>>) -> Result<Self, String> {
        let mut errs = Vec::new();
        let key_errs = validate_key(&key);
        if !key_errs.is_empty() {
            errs.push(invalid("key", BadValue::Str(&key), &key_errs.join("; ")));
        }
        let vals = values.as_deref().unwrap_or_default();
        let bad = BadValue::Strings(values.as_deref());
        match op {
            Operator::In | Operator::NotIn if vals.is_empty() => {
                errs.push(invalid("values", bad, "for 'in', 'notin' operators, values set can't be empty"))
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if vals.len() != 1 => {
                errs.push(invalid("values", bad, "exact-match compatibility requires one single value"))
            }
            Operator::Exists | Operator::DoesNotExist if !vals.is_empty() => {
                errs.push(invalid("values", bad, "values set must be empty for exists and does not exist"))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if vals.len() != 1 {
                    errs.push(invalid("values", bad, "for 'Gt', 'Lt' operators, exactly one value is required"));
                }
                for (i, v) in vals.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("values[{i}]"),
                            BadValue::Str(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in vals.iter().enumerate() {
            let v_errs = is_valid_label_value(v);
            if !v_errs.is_empty() {
                let path = format!("values[{i}][{key}]");
                errs.push(invalid(&path, BadValue::Str(v), &v_errs.join("; ")));
            }
        }
        if !errs.is_empty() {
            return Err(aggregate(&errs));
        }
        let values = values.unwrap_or_default();
        Ok(Requirement { key, op, values })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.op
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfies this requirement. `notin` and `!=` match
    /// objects without the key; `>` and `<` need an integer label value. A
    /// label whose JSON value is not a string counts as absent.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let found = labels.get(&self.key).and_then(Value::as_str);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => found.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !found.is_some_and(has),
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(found), [want]) = (found, self.values.as_slice()) else {
                    return false;
                };
                match (found.parse::<i64>(), want.parse::<i64>()) {
                    (Ok(have), Ok(want)) if self.op == Operator::GreaterThan => have > want,
                    (Ok(have), Ok(want)) => have < want,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Upstream's `Requirement.String()`, e.g. `!a`, `b in (x,y)`, `c>5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return write!(f, "{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut sorted = self.values.clone();
        sorted.sort();
        let joined = sorted.join(",");
        match self.op {
            Operator::In | Operator::NotIn => write!(f, "{}{op}({joined})", self.key),
            _ => write!(f, "{}{op}{joined}", self.key),
        }
    }
}

/// A label selector: requirements that must all hold. The default value
/// selects everything; [`LabelSelector::nothing`] (from a JSON `null`
/// selector) selects nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Selects every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Selects no object.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// Parses a `labelSelector=` query string value as upstream does; the
    /// error's Display is the upstream message.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        parser::parse(s).map(Self::from_requirements).map_err(SelectorError::Label)
    }

    /// The selector for these requirements (sorted by key, as upstream).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// Converts a metav1.LabelSelector object (`matchLabels`,
    /// `matchExpressions`): `null` selects nothing, `{}` everything.
    pub fn from_label_selector_json(v: &Value) -> Result<Self, SelectorError> {
        super::json::convert(v).map_err(SelectorError::Label)
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector does not restrict anything (false for
    /// [`LabelSelector::nothing`], as upstream).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the select-nothing selector.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// The single value `key` must have, when the selector pins one.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.op, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [one]) => Some(one),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// Upstream's `Selector.String()`: requirements joined by ','.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}
