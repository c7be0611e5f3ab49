//! Bearer token authentication: a service account token names a user only while what it names still
//! exists — its ServiceAccount and the Pod, Secret or Node it is bound to, each with the uid in the
//! token. A Pod being deleted keeps its tokens valid for a minute past its deletion timestamp, as
//! upstream's validator does.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Bound, Claims, TokenAuthority};
use crate::apiserver::auth::User;
use crate::apiserver::object;
use crate::apiserver::rest::Rest;

/// How long after its deletion timestamp a pod's tokens still work.
const DELETED_POD_GRACE: time::Duration = time::Duration::seconds(60);

/// The user `token` authenticates as for `audiences`, with the claims it carried; or why it does not.
pub async fn user_of(
    rest: &Rest,
    tokens: &TokenAuthority,
    token: &str,
    audiences: &[String],
) -> Result<(User, Claims), String> {
    let claims = tokens.verify(token, audiences)?;
    let bindings = &claims.kubernetes;
    let ns = bindings.namespace.as_str();
    check_bound(rest, "serviceaccounts", Some(ns), &bindings.serviceaccount).await?;
    if let Some(pod) = &bindings.pod {
        let found = check_bound(rest, "pods", Some(ns), pod).await?;
        if deleted_long_ago(&found) {
            return Err(format!("pod {ns}/{} has been deleted", pod.name));
        }
    }
    if let Some(secret) = &bindings.secret {
        check_bound(rest, "secrets", Some(ns), secret).await?;
    }
    // A pod-bound token names the pod's node for information only; a token bound to a node needs it.
    if let (Some(node), None) = (&bindings.node, &bindings.pod) {
        check_bound(rest, "nodes", None, node).await?;
    }
    Ok((user(&claims), claims))
}

/// The object `bound` names, if it still exists with the same uid.
async fn check_bound(rest: &Rest, plural: &str, ns: Option<&str>, bound: &Bound) -> Result<Value, String> {
    let what = match ns {
        Some(ns) => format!("{plural} {ns}/{}", bound.name),
        None => format!("{plural} {}", bound.name),
    };
    let found = rest.find_core(plural, ns, &bound.name).await.map_err(|e| e.message)?;
    let found = found.ok_or_else(|| format!("{what} has been deleted"))?;
    match object::meta_str(&found, "uid") {
        Some(uid) if uid == bound.uid => Ok(found),
        Some(uid) => Err(format!("{what}: uid {uid} does not match the token's {}", bound.uid)),
        None => Err(format!("{what} has no uid")),
    }
}

fn deleted_long_ago(pod: &Value) -> bool {
    let Some(at) = object::meta_str(pod, "deletionTimestamp") else { return false };
    let Ok(at) = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) else {
        return false;
    };
    at + DELETED_POD_GRACE < time::OffsetDateTime::now_utc()
}

/// The user a service account token stands for (upstream's service account user info).
fn user(claims: &Claims) -> User {
    let b = &claims.kubernetes;
    let mut extra = BTreeMap::new();
    let mut put = |key: &str, value: &str| {
        extra.insert(format!("authentication.kubernetes.io/{key}"), vec![value.to_string()]);
    };
    if let Some(pod) = &b.pod {
        put("pod-name", &pod.name);
        put("pod-uid", &pod.uid);
    }
    if let Some(node) = &b.node {
        put("node-name", &node.name);
        if !node.uid.is_empty() {
            put("node-uid", &node.uid);
        }
    }
    put("credential-id", &format!("JTI={}", claims.jti));
    User {
        name: format!("system:serviceaccount:{}:{}", b.namespace, b.serviceaccount.name),
        uid: b.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", b.namespace),
            "system:authenticated".into(),
        ],
        extra,
    }
}
