//! HTTP verbs on resources: maps method + path + query onto the REST layer and renders the answer
//! (object, list or Table; Scale views; bindings; evictions).

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::core::registry::ResourceInfo;

use super::negotiate::{self, IncludeObject, Output};
use super::patch::{self, PatchType};
use super::query::Query;
use super::request::ResourcePath;
use super::rest::{DeleteOptions, Deleted, Rest, UpdateKind, UpdateOptions, WriteContext};
use super::status::{ApiError, ApiResult};
use super::{eviction, object, scale, watch};

type Response = axum::response::Response;

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok())
}

/// The verb a request maps to (as upstream names them in audit logs and metrics).
pub fn verb(method: &Method, path: &ResourcePath, query: &Query) -> &'static str {
    match (method, path.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if query.flag("watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// Serves one resource request.
pub async fn serve(
    rest: &Rest,
    method: &Method,
    path: ResourcePath,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let res = path.resource;
    let ns = path.namespace.as_deref();
    let sub = path.subresource.as_deref();
    match (verb(method, &path, query), path.name.as_deref()) {
        ("get", Some(name)) => {
            let obj = rest.get(res, ns, name).await?;
            match sub {
                Some("scale") => Ok(negotiate::json_response(StatusCode::OK, &scale::view(res, &obj), &[])),
                _ => render_one(res, obj, headers, query),
            }
        }
        ("list", None) => list(rest, res, ns, query, headers).await,
        ("watch", None) => watch::serve(rest, res, ns, query, headers).await,
        ("create", None) => {
            let mut ctx = query.write(user_agent(headers))?;
            let obj = negotiate::decode_body(headers, &body)?;
            let created = rest.create(res, ns, obj, &mut ctx).await?;
            Ok(negotiate::json_bytes_response(StatusCode::CREATED, created.json, &ctx.warnings))
        }
        ("create", Some(name)) if sub == Some("binding") || sub == Some("eviction") => {
            let mut ctx = query.write(user_agent(headers))?;
            let body = negotiate::decode_body(headers, &body)?;
            if sub == Some("binding") {
                scale::bind(rest, res, ns, name, &body, &mut ctx).await?;
            } else {
                eviction::evict(rest, res, ns, name, &body, &ctx).await?;
            }
            Ok(negotiate::json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                &[],
            ))
        }
        ("update", Some(name)) => {
            let mut ctx = query.write(user_agent(headers))?;
            let obj = negotiate::decode_body(headers, &body)?;
            let (written, created) = match sub {
                Some("scale") => (scale::update(rest, res, ns, name, &obj, &mut ctx).await?, false),
                Some("status") => rest.update(res, ns, name, obj, UpdateKind::Status, &mut ctx).await?,
                Some("finalize") => rest.update(res, ns, name, obj, UpdateKind::Finalize, &mut ctx).await?,
                _ => rest.update(res, ns, name, obj, UpdateKind::Main, &mut ctx).await?,
            };
            let code = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(negotiate::json_response(code, &written, &ctx.warnings))
        }
        ("patch", Some(name)) => {
            let mut ctx = query.write(user_agent(headers))?;
            let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let kind = PatchType::from_content_type(content_type)?;
            let patch_body = match kind {
                PatchType::Apply => negotiate::decode_yaml(&body)?,
                _ => negotiate::decode_body(&HeaderMap::new(), &body)?,
            };
            if kind == PatchType::Apply && query.get("fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"));
            }
            let (written, code) = patch_object(rest, res, ns, name, sub, kind, patch_body, &mut ctx).await?;
            Ok(negotiate::json_response(code, &written, &ctx.warnings))
        }
        ("delete", Some(name)) => {
            let ctx = query.write(user_agent(headers))?;
            let opts = delete_options(query, headers, &body)?;
            match rest.delete(res, ns, name, &opts, &ctx).await? {
                Deleted::Gone(obj) => Ok(negotiate::json_response(StatusCode::OK, &obj, &[])),
                Deleted::Pending(obj) => Ok(negotiate::json_response(StatusCode::ACCEPTED, &obj, &[])),
            }
        }
        ("deletecollection", None) => {
            let ctx = query.write(user_agent(headers))?;
            let opts = delete_options(query, headers, &body)?;
            let mut list_query = query.list()?;
            list_query.limit = 0;
            let items = rest.list(res, ns, &list_query).await?.items;
            for item in &items {
                let name = object::name(item).unwrap_or("");
                match rest.delete(res, object::namespace(item), name, &opts, &ctx).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
            Ok(negotiate::json_response(StatusCode::OK, &status, &[]))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

/// A PATCH, including apply patches that create the object when it does not exist.
#[allow(clippy::too_many_arguments)]
async fn patch_object(
    rest: &Rest,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    kind: PatchType,
    patch_body: Value,
    ctx: &mut WriteContext,
) -> ApiResult<(Value, StatusCode)> {
    if sub == Some("scale") {
        return Ok((scale::patch(rest, res, ns, name, kind, &patch_body, ctx).await?, StatusCode::OK));
    }
    if kind == PatchType::Apply {
        return super::apply::server_side_apply(rest, res, ns, name, patch_body, ctx).await;
    }
    if ctx.force {
        return Err(ApiError::invalid(
            res,
            name,
            vec![super::status::FieldError::forbidden("force", "may not be specified for non-apply patch")],
        ));
    }
    rest.get(res, ns, name).await?;
    let opts = if sub == Some("status") { UpdateOptions::STATUS } else { UpdateOptions::MAIN };
    let written = rest
        .guaranteed_update(res, ns, name, opts, ctx, |current| {
            let result = patch::apply(res, kind, &current, &patch_body);
            async move { result }
        })
        .await?;
    Ok((written, StatusCode::OK))
}

fn delete_options(query: &Query, headers: &HeaderMap, body: &Bytes) -> ApiResult<DeleteOptions> {
    let mut opts = if body.is_empty() {
        DeleteOptions::default()
    } else {
        DeleteOptions::from_body(&negotiate::decode_body(headers, body)?)?
    };
    if let Some(grace) = query.number("gracePeriodSeconds")? {
        opts.grace_period_seconds = Some(grace);
    }
    if let Some(policy) = query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        opts = DeleteOptions::from_body(&json!({
            "propagationPolicy": policy,
            "gracePeriodSeconds": opts.grace_period_seconds,
            "preconditions": {"uid": opts.precondition_uid, "resourceVersion": opts.precondition_resource_version},
        }))?;
    }
    Ok(opts)
}

fn render_one(res: &ResourceInfo, obj: Value, headers: &HeaderMap, query: &Query) -> ApiResult<Response> {
    match negotiate::output(headers)? {
        Output::Json => Ok(negotiate::json_response(StatusCode::OK, &obj, &[])),
        Output::Metadata { beta } => Ok(negotiate::json_response(StatusCode::OK, &negotiate::partial(&obj, beta), &[])),
        Output::Table { beta } => {
            let include = IncludeObject::parse(query.get("includeObject"))?;
            let meta = json!({"resourceVersion": object::resource_version(&obj).unwrap_or("")});
            Ok(negotiate::json_response(StatusCode::OK, &negotiate::table(res, &[obj], include, beta, true, meta), &[]))
        }
    }
}

async fn list(
    rest: &Rest,
    res: &ResourceInfo,
    ns: Option<&str>,
    query: &Query,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let output = negotiate::output(headers)?;
    let list_query = query.list()?;
    let out = rest.list(res, ns, &list_query).await?;
    let mut meta = json!({"resourceVersion": out.revision.to_string()});
    if let Some(token) = &out.continue_token {
        meta["continue"] = json!(token);
    }
    let body = match output {
        Output::Json => list_object(&res.list_kind(), &res.api_version(), meta, out.items),
        Output::Table { beta } => {
            let include = IncludeObject::parse(query.get("includeObject"))?;
            negotiate::table(res, &out.items, include, beta, true, meta)
        }
        Output::Metadata { beta } => {
            let items: Vec<Value> = out.items.iter().map(|o| negotiate::partial(o, beta)).collect();
            let api_version = if beta { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" };
            list_object("PartialObjectMetadataList", api_version, meta, items)
        }
    };
    Ok(negotiate::json_response(StatusCode::OK, &body, &[]))
}

/// A list object, built by moving the items in: a list can be large, and `json!` would copy every item.
fn list_object(kind: &str, api_version: &str, meta: Value, items: Vec<Value>) -> Value {
    let mut list = serde_json::Map::new();
    list.insert("kind".into(), json!(kind));
    list.insert("apiVersion".into(), json!(api_version));
    list.insert("metadata".into(), meta);
    list.insert("items".into(), Value::Array(items));
    Value::Object(list)
}
