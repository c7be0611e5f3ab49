//! Query parameters of resource requests, parsed and checked once: list options, write options
//! (dryRun, fieldValidation, fieldManager), watch options.

use std::collections::HashMap;

use crate::core::selector::{FieldSelector, LabelSelector};

use super::rest::{FieldValidation, ListQuery, WriteContext};
use super::status::{ApiError, ApiResult};

/// The decoded query string.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// Every parameter, for passing on.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// A non-negative integer parameter.
    pub fn number(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!("{key}: invalid value {v:?}: must be a non-negative integer"))
            }),
        }
    }

    /// The list options.
    pub fn list(&self) -> ApiResult<ListQuery> {
        let labels = match self.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(
                LabelSelector::parse(s)
                    .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            ),
            None => None,
        };
        let fields = match self.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?),
            None => None,
        };
        Ok(ListQuery {
            labels,
            fields,
            limit: self.number("limit")?.unwrap_or(0) as usize,
            continue_token: self.get("continue").filter(|s| !s.is_empty()).map(str::to_string),
            resource_version: self.get("resourceVersion").map(str::to_string),
            resource_version_match: self.get("resourceVersionMatch").filter(|s| !s.is_empty()).map(str::to_string),
        })
    }

    /// The write options; `user_agent` names the field manager when the request does not.
    pub fn write(&self, user_agent: Option<&str>) -> ApiResult<WriteContext> {
        let dry_run = match self.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                )))
            }
        };
        let field_validation = match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                )))
            }
        };
        let field_manager = self.get("fieldManager").filter(|s| !s.is_empty()).map(str::to_string);
        if field_manager.as_ref().is_some_and(|m| m.len() > 128) {
            return Err(ApiError::bad_request("fieldManager: Too long: must have at most 128 bytes"));
        }
        // Without fieldManager, upstream names the manager after the client: the user agent up to '/'.
        let field_manager = field_manager.or_else(|| {
            user_agent
                .map(|ua| ua.split('/').next().unwrap_or("").chars().take(128).collect::<String>())
                .filter(|m| !m.is_empty())
        });
        Ok(WriteContext {
            dry_run,
            field_validation,
            field_manager,
            applied: false,
            force: self.flag("force"),
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_and_write_options() {
        let q = Query::parse(Some("labelSelector=app%3Dweb&limit=500&dryRun=All&fieldValidation=Strict"));
        let list = q.list().expect("list");
        assert_eq!(list.limit, 500);
        assert!(list.labels.is_some());
        let write = q.write(None).expect("write");
        assert!(write.dry_run);
        assert_eq!(write.field_validation, FieldValidation::Strict);
        assert!(Query::parse(Some("limit=-3")).list().is_err());
        assert!(Query::parse(Some("dryRun=Some")).write(None).is_err());
        assert!(Query::parse(Some("labelSelector=a%20in%20(b")).list().is_err());
    }
}
