//! List: label and field selectors, limit/continue paging with an opaque token that pins the revision of
//! the first page, and resourceVersion / resourceVersionMatch semantics as upstream serves them.

use base64::Engine;
use serde_json::{json, Value};

use crate::core::registry::ResourceInfo;
use crate::core::selector::{FieldSelector, LabelSelector};
use crate::store::ListOptions;

use super::Rest;
use crate::apiserver::status::{ApiError, ApiResult};
use crate::apiserver::{fields, object};

/// The list parameters of a request.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

impl ListQuery {
    /// Whether `obj` passes the selectors.
    pub fn matches(&self, res: &ResourceInfo, obj: &Value) -> bool {
        self.labels.as_ref().is_none_or(|s| s.matches(&object::labels(obj)))
            && self.fields.as_ref().is_none_or(|s| s.matches(|f| fields::value(res, obj, f)))
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct ListOut {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

fn encode_token(revision: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_token(token: &str) -> ApiResult<(i64, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = value.get("rv").and_then(Value::as_i64).filter(|rv| *rv > 0).ok_or_else(bad)?;
    let start = value.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, start.to_string()))
}

impl Rest {
    /// Lists objects of `res` in `ns` (all namespaces when None).
    pub async fn list(&self, res: &ResourceInfo, ns: Option<&str>, query: &ListQuery) -> ApiResult<ListOut> {
        if let Some(fs) = &query.fields {
            for req in fs.requirements() {
                if !fields::supported(res, &req.field) {
                    return Err(ApiError::bad_request(format!("field label not supported: {}", req.field)));
                }
            }
        }
        let prefix = object::prefix(res, ns);
        let (mut revision, mut start_after) = match &query.continue_token {
            Some(token) => {
                if query.resource_version.as_deref().is_some_and(|rv| !rv.is_empty()) {
                    return Err(ApiError::bad_request(
                        "specifying resource version is not allowed when using continue",
                    ));
                }
                let (rv, start) = decode_token(token)?;
                (rv, Some(format!("{prefix}{start}")))
            }
            None => (self.list_revision(query)?, None),
        };
        let mut items = Vec::new();
        loop {
            let want = if query.limit == 0 { 0 } else { query.limit - items.len() };
            let options = ListOptions { revision, start_after: start_after.clone(), limit: want };
            let page = self.store.list(&prefix, options).await.map_err(|e| match e {
                crate::store::StoreError::Compacted { .. } if query.continue_token.is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                other => other.into(),
            })?;
            revision = page.revision;
            let last_key = page.records.last().map(|r| r.key.clone());
            for record in &page.records {
                let obj = object::decode(record)?;
                if query.matches(res, &obj) {
                    items.push(obj);
                }
            }
            let full = query.limit > 0 && items.len() >= query.limit;
            match (page.more, last_key) {
                (true, Some(last)) if full => {
                    let start = last.strip_prefix(&prefix).unwrap_or(&last).to_string();
                    return Ok(ListOut { items, revision, continue_token: Some(encode_token(revision, &start)) });
                }
                (true, Some(last)) => start_after = Some(last),
                _ => return Ok(ListOut { items, revision, continue_token: None }),
            }
        }
    }

    /// The revision a list without a continue token reads at.
    fn list_revision(&self, query: &ListQuery) -> ApiResult<i64> {
        let rv = query.resource_version.as_deref().unwrap_or("");
        match query.resource_version_match.as_deref().unwrap_or("") {
            "" | "NotOlderThan" if rv.is_empty() || rv == "0" => Ok(0),
            "" | "NotOlderThan" => {
                let requested = object::parse_resource_version(rv)?;
                let current = self.store.current_revision();
                if requested > current {
                    return Err(crate::store::StoreError::FutureRevision { requested, current }.into());
                }
                Ok(0)
            }
            "Exact" if rv.is_empty() || rv == "0" => Err(ApiError::bad_request(
                "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\" or unset",
            )),
            "Exact" => object::parse_resource_version(rv),
            other => Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = encode_token(42, "default/cm-0500");
        assert_eq!(decode_token(&token).expect("token"), (42, "default/cm-0500".to_string()));
        assert!(decode_token("not-a-token!").is_err());
        let sneaky = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"rv":3,"start":"/../x"}"#);
        assert!(decode_token(&sneaky).is_err());
    }
}
