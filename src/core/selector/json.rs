//! Conversion of a metav1.LabelSelector JSON object into a [`LabelSelector`],
//! as upstream's `metav1.LabelSelectorAsSelector` does after decoding: `null`
//! selects nothing, no terms select everything, `matchLabels` become `=`
//! requirements and `matchExpressions` use In/NotIn/Exists/DoesNotExist.
//! JSON of the wrong shape is reported the way Go's decoder words it.

use serde_json::{Map, Value};

use super::label::{LabelSelector, Operator, Requirement};

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go names the innermost struct and the full field path.
fn type_error(v: &Value, field: &str, go_type: &str) -> String {
    let owner = if field.starts_with("matchExpressions.") { "LabelSelectorRequirement" } else { "LabelSelector" };
    format!("json: cannot unmarshal {} into Go struct field {owner}.{field} of type {go_type}", kind(v))
}

/// A Go `string` field: `null` or absent decode to "".
fn string_field(v: Option<&Value>, field: &str, go_type: &str) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(type_error(other, field, go_type)),
    }
}

/// A decoded metav1.LabelSelectorRequirement: key, operator, values.
type Expr = (String, String, Vec<String>);

fn decode_expr(expr: &Map<String, Value>) -> Result<Expr, String> {
    let key = string_field(expr.get("key"), "matchExpressions.key", "string")?;
    let op = string_field(expr.get("operator"), "matchExpressions.operator", "v1.LabelSelectorOperator")?;
    let mut values = Vec::new();
    match expr.get("values") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                values.push(string_field(Some(item), "matchExpressions.values", "string")?);
            }
        }
        Some(other) => return Err(type_error(other, "matchExpressions.values", "[]string")),
    }
    Ok((key, op, values))
}

fn requirement_from((key, op_name, values): Expr) -> Result<Requirement, String> {
    let op = match op_name.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        _ => return Err(format!("{} is not a valid label selector operator", super::errtext::go_quote(&op_name))),
    };
    // Upstream copies the values with append([]string(nil), ...), so an empty
    // list is a nil slice and prints as `[]string(nil)`.
    let values = (!values.is_empty()).then_some(values);
    Requirement::build(key, op, values)
}

/// Decodes the whole object first (shape errors win, as in Go), then builds
/// and validates the requirements.
pub(super) fn convert(v: &Value) -> Result<LabelSelector, String> {
    let obj = match v {
        Value::Null => return Ok(LabelSelector::nothing()),
        Value::Object(obj) => obj,
        other => return Err(format!("json: cannot unmarshal {} into Go value of type v1.LabelSelector", kind(other))),
    };
    let mut labels = Vec::new();
    match obj.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                labels.push((k.clone(), string_field(Some(v), "matchLabels", "string")?));
            }
        }
        Some(other) => return Err(type_error(other, "matchLabels", "map[string]string")),
    }
    let mut exprs = Vec::new();
    match obj.get("matchExpressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                exprs.push(match item {
                    Value::Null => (String::new(), String::new(), Vec::new()),
                    Value::Object(m) => decode_expr(m)?,
                    other => return Err(type_error(other, "matchExpressions", "v1.LabelSelectorRequirement")),
                });
            }
        }
        Some(other) => return Err(type_error(other, "matchExpressions", "[]v1.LabelSelectorRequirement")),
    }
    if labels.is_empty() && exprs.is_empty() {
        return Ok(LabelSelector::everything());
    }
    let mut reqs = Vec::with_capacity(labels.len() + exprs.len());
    for (k, v) in labels {
        reqs.push(Requirement::build(k, Operator::Equals, Some(vec![v]))?);
    }
    for expr in exprs {
        reqs.push(requirement_from(expr)?);
    }
    Ok(LabelSelector::from_requirements(reqs))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::{LabelSelector, Operator};

    fn conv(v: Value) -> LabelSelector {
        match LabelSelector::from_label_selector_json(&v) {
            Ok(s) => s,
            Err(e) => panic!("{v}: {e}"),
        }
    }

    fn err(v: Value) -> String {
        match LabelSelector::from_label_selector_json(&v) {
            Ok(s) => panic!("{v} converted to {s}"),
            Err(e) => e.to_string(),
        }
    }

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn null_and_empty() {
        let nothing = conv(Value::Null);
        assert!(nothing.matches_nothing() && !nothing.is_empty());
        assert!(!nothing.matches(&labels(json!({}))));
        for empty in [json!({}), json!({"matchLabels": {}}), json!({"matchLabels": null, "matchExpressions": []})] {
            let s = conv(empty);
            assert!(s.is_empty());
            assert!(s.matches(&labels(json!({"a": "b"}))));
        }
    }

    #[test]
    fn labels_and_expressions() {
        let s = conv(json!({
            "matchLabels": {"app": "web", "tier": "front"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "NotIn", "values": ["true"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []},
            ]
        }));
        assert_eq!(s.to_string(), "app=web,canary notin (true),env in (prod,staging),!legacy,owner,tier=front");
        assert_eq!(s.requirements()[0].operator(), Operator::Equals);
        let mut l = labels(json!({"app": "web", "tier": "front", "env": "prod", "owner": "me"}));
        assert!(s.matches(&l));
        l.insert("canary".into(), json!("true"));
        assert!(!s.matches(&l));
        l.insert("canary".into(), json!("false"));
        l.insert("legacy".into(), json!(""));
        assert!(!s.matches(&l));
        l.remove("legacy");
        l.insert("env".into(), json!("dev"));
        assert!(!s.matches(&l));
        assert_eq!(s.requires_exact_match("app"), Some("web"));
    }

    #[test]
    fn invalid_selectors() {
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})),
            "\"Gt\" is not a valid label selector operator"
        );
        assert_eq!(err(json!({"matchExpressions": [{"key": "a"}]})), "\"\" is not a valid label selector operator");
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x<y"]}]})),
            "[values: Invalid value: []string{\"x<y\"}: values set must be empty for exists and does not exist, values[0][a]: Invalid value: \"x<y\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')]"
        );
        assert!(err(json!({"matchLabels": {"bad key": "v"}}))
            .starts_with("key: Invalid value: \"bad key\": name part must consist of"));
        assert_eq!(
            err(json!({"matchLabels": {"k": "v".repeat(64)}})),
            format!("values[0][k]: Invalid value: \"{}\": must be no more than 63 characters", "v".repeat(64))
        );
    }

    #[test]
    fn wrong_shapes() {
        assert_eq!(err(json!([])), "json: cannot unmarshal array into Go value of type v1.LabelSelector");
        assert_eq!(
            err(json!({"matchLabels": {"a": 1}})),
            "json: cannot unmarshal number into Go struct field LabelSelector.matchLabels of type string"
        );
        assert_eq!(
            err(json!({"matchLabels": []})),
            "json: cannot unmarshal array into Go struct field LabelSelector.matchLabels of type map[string]string"
        );
        assert_eq!(
            err(json!({"matchExpressions": {}})),
            "json: cannot unmarshal object into Go struct field LabelSelector.matchExpressions of type []v1.LabelSelectorRequirement"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]})),
            "json: cannot unmarshal string into Go struct field LabelSelectorRequirement.matchExpressions.values of type []string"
        );
        // Shape errors win over requirement errors, as in Go's decode-then-convert.
        assert!(err(json!({"matchLabels": {"bad key": "v"}, "matchExpressions": 1})).starts_with("json: "));
        // Null members decode to zero values.
        let s = conv(json!({"matchLabels": {"a": null}}));
        assert!(s.matches(&labels(json!({"a": ""}))));
    }
}
