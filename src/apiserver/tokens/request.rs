//! `POST serviceaccounts/<name>/token` (upstream's TokenRequest, what `kubectl create token` and the
//! kubelet call): checks the request, the ServiceAccount and the object the token is to be bound to,
//! then answers with a signed token and its expiry. A pod-bound token asked for with the kubelet's
//! 3607 s is issued for a year with a `warnafter` at the asked time (upstream's
//! `--service-account-extend-token-expiration`), so clients that never reload tokens keep working.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec, TokenRequestStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{json, Value};

use super::{Bindings, Bound, Claims, TokenAuthority};
use crate::apiserver::object;
use crate::apiserver::rest::Rest;
use crate::apiserver::status::{ApiError, ApiResult, FieldError};
use crate::core::registry::{ResourceInfo, ALL_VERBS};

/// The kind errors about a request name.
static TOKEN_REQUEST: ResourceInfo = ResourceInfo {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenRequest",
    plural: "tokenrequests",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    verbs: ALL_VERBS,
};

const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// What the kubelet asks for; such pod-bound tokens are extended to a year.
const KUBELET_EXPIRATION_SECONDS: i64 = 3607;
const EXTENDED_EXPIRATION_SECONDS: i64 = 365 * 24 * 3600;

/// Issues a token for ServiceAccount `ns/name` as `body` (a TokenRequest) asks.
pub async fn create(rest: &Rest, tokens: &TokenAuthority, ns: &str, name: &str, body: Value) -> ApiResult<Value> {
    // Only the spec counts: clients send an empty status (kubectl: `expirationTimestamp: null`).
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut spec: TokenRequestSpec = serde_json::from_value(spec)
        .map_err(|e| ApiError::bad_request(format!("TokenRequest in version \"v1\" cannot be handled: {e}")))?;
    let expiration = spec.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    check_expiration(name, expiration)?;
    spec.expiration_seconds = Some(expiration);
    if spec.audiences.is_empty() {
        spec.audiences = tokens.api_audiences.clone();
    }
    let account = rest.get(Rest::core_resource("serviceaccounts")?, Some(ns), name).await?;
    let mut bindings = Bindings {
        namespace: ns.to_string(),
        serviceaccount: bound_to(&account),
        pod: None,
        secret: None,
        node: None,
        warnafter: None,
    };
    if let Some(reference) = &spec.bound_object_ref {
        bind(rest, ns, name, reference, &mut bindings).await?;
    }
    let now = jiff::Timestamp::now();
    let mut lifetime = expiration;
    if bindings.pod.is_some() && expiration == KUBELET_EXPIRATION_SECONDS {
        lifetime = EXTENDED_EXPIRATION_SECONDS;
        bindings.warnafter = Some(now.as_second() + expiration);
    }
    let claims = Claims {
        iss: tokens.issuer.clone(),
        sub: format!("system:serviceaccount:{ns}:{name}"),
        aud: spec.audiences.clone(),
        exp: now.as_second() + lifetime,
        iat: now.as_second(),
        nbf: now.as_second(),
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: bindings,
    };
    let token = tokens.sign(&claims).map_err(ApiError::internal)?;
    let expires = jiff::Timestamp::from_second(now.as_second() + expiration).map_err(ApiError::internal)?;
    let answer = TokenRequest {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            creation_timestamp: Some(Time(now)),
            ..Default::default()
        },
        spec,
        status: Some(TokenRequestStatus { token, expiration_timestamp: Time(expires) }),
    };
    let mut out = serde_json::to_value(answer).map_err(ApiError::internal)?;
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["kind"] = json!("TokenRequest");
    Ok(out)
}

fn check_expiration(name: &str, seconds: i64) -> ApiResult<()> {
    let why = if seconds < MIN_EXPIRATION_SECONDS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION_SECONDS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    Err(ApiError::invalid(
        &TOKEN_REQUEST,
        name,
        vec![FieldError::invalid("spec.expirationSeconds", &json!(seconds), why)],
    ))
}

/// Name and uid of `obj`.
fn bound_to(obj: &Value) -> Bound {
    Bound {
        name: object::name(obj).unwrap_or_default().to_string(),
        uid: object::meta_str(obj, "uid").unwrap_or_default().to_string(),
    }
}

/// Records the object `reference` names in `bindings`, if it exists with the uid the reference gives.
async fn bind(
    rest: &Rest,
    ns: &str,
    name: &str,
    reference: &BoundObjectReference,
    bindings: &mut Bindings,
) -> ApiResult<()> {
    let kind = reference.kind.as_deref().unwrap_or("");
    let api_version = reference.api_version.as_deref().unwrap_or("");
    let plural = match (kind, api_version) {
        ("Pod", "v1") => "pods",
        ("Secret", "v1") => "secrets",
        ("Node", "v1") => "nodes",
        _ => {
            let field = FieldError::not_supported(
                "spec.boundObjectRef.kind",
                &json!(kind),
                &["v1, Kind=Pod", "v1, Kind=Secret", "v1, Kind=Node"],
            );
            return Err(ApiError::invalid(&TOKEN_REQUEST, name, vec![field]));
        }
    };
    let target = reference.name.as_deref().unwrap_or("");
    if target.is_empty() {
        let field = FieldError::required("spec.boundObjectRef.name", "Required value");
        return Err(ApiError::invalid(&TOKEN_REQUEST, name, vec![field]));
    }
    let scope = (plural != "nodes").then_some(ns);
    let found = rest.get(Rest::core_resource(plural)?, scope, target).await?;
    let bound = bound_to(&found);
    if let Some(uid) = reference.uid.as_deref().filter(|u| !u.is_empty() && *u != bound.uid) {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {kind} {target:?}: the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    match plural {
        "pods" => {
            let runs_as = found.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default");
            if runs_as != name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                )));
            }
            let node = found.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty());
            if let Some(node) = node {
                let node_obj = rest.find_core("nodes", None, node).await?;
                let uid = node_obj.as_ref().and_then(|n| object::meta_str(n, "uid")).unwrap_or_default();
                bindings.node = Some(Bound { name: node.to_string(), uid: uid.to_string() });
            }
            bindings.pod = Some(bound);
        }
        "secrets" => bindings.secret = Some(bound),
        _ => bindings.node = Some(bound),
    }
    Ok(())
}
