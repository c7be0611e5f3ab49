//! authentication.k8s.io's reviews, answered from the request and never stored: TokenReview (is this
//! bearer token valid, and whose is it: what webhooks and metrics servers ask) and SelfSubjectReview
//! (who am I: `kubectl auth whoami`).

use serde_json::{json, Map, Value};

use super::auth::User;
use super::status::{ApiError, ApiResult};
use super::tokens::authenticate;
use super::ApiState;
use crate::core::registry::ResourceInfo;

/// Answers a review of kind `res` posted as `body` by `user`.
pub async fn create(state: &ApiState, res: &ResourceInfo, user: Option<&User>, body: Value) -> ApiResult<Value> {
    let kind_ok = body.get("kind").and_then(Value::as_str).is_none_or(|k| k.is_empty() || k == res.kind);
    if !kind_ok {
        return Err(ApiError::bad_request(format!("the body must be a {}", res.kind)));
    }
    let status = match res.kind {
        "TokenReview" => token_review(state, &body).await?,
        "SelfSubjectReview" => {
            let user = user.ok_or_else(ApiError::unauthorized)?;
            json!({"userInfo": user_info(user)})
        }
        other => return Err(ApiError::method_not_allowed(format!("{other} cannot be created"))),
    };
    let mut answer = Map::new();
    answer.insert("kind".into(), json!(res.kind));
    answer.insert("apiVersion".into(), json!(res.api_version()));
    let mut metadata = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    metadata["creationTimestamp"] = Value::Null;
    answer.insert("metadata".into(), metadata);
    if let Some(spec) = body.get("spec") {
        answer.insert("spec".into(), spec.clone());
    }
    answer.insert("status".into(), status);
    Ok(Value::Object(answer))
}

/// Whether the review's token is a valid service account token for the audiences it names (the API's
/// own when it names none).
async fn token_review(state: &ApiState, body: &Value) -> ApiResult<Value> {
    let token = body.pointer("/spec/token").and_then(Value::as_str).unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
    }
    let asked: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let audiences = if asked.is_empty() { state.tokens.api_audiences.clone() } else { asked };
    Ok(match authenticate::user_of(&state.rest, &state.tokens, token, &audiences).await {
        Ok((user, claims)) => {
            let matched: Vec<&String> = audiences.iter().filter(|a| claims.aud.contains(a)).collect();
            json!({"authenticated": true, "user": user_info(&user), "audiences": matched})
        }
        Err(why) => json!({"authenticated": false, "user": {}, "error": why}),
    })
}

/// A user as `UserInfo`.
fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}
