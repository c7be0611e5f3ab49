//! The Kubernetes API server: an axum router over rustls that authenticates each request, parses what it
//! addresses, and serves discovery, OpenAPI, health, metrics and the generic resource handlers over the
//! REST layer. Only the API server touches the store; every client, in-process or not, goes through it.

pub mod admission;
mod apply;
pub mod auth;
mod discovery;
mod eviction;
mod fields;
mod handlers;
mod health;
mod json;
mod metrics;
pub(crate) mod negotiate;
pub mod node_proxy;
pub mod object;
mod openapi;
mod patch;
mod protobuf;
mod query;
mod request;
mod resource_metrics;
pub mod rest;
mod reviews;
mod scale;
pub mod serve;
pub mod status;
mod table;
pub mod tokens;
mod watch;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use http::{Request, StatusCode};

use request::Target;
use rest::Rest;
use status::ApiError;

/// Shared state of the API server.
pub struct ApiState {
    pub rest: Rest,
    pub metrics: metrics::Metrics,
    /// Set once the bootstrap objects exist.
    pub ready: AtomicBool,
    /// `host:port` clients reach the server at.
    pub server_address: String,
    /// How `pods/log` reaches kubelets; set once the server has its kubelet-client certificate.
    pub kubelet: std::sync::OnceLock<node_proxy::KubeletClient>,
    /// Issues and checks service account tokens.
    pub tokens: tokens::TokenAuthority,
}

impl ApiState {
    pub fn new(rest: Rest, server_address: String, tokens: tokens::TokenAuthority) -> Arc<ApiState> {
        Arc::new(ApiState {
            rest,
            metrics: metrics::Metrics::default(),
            ready: AtomicBool::new(false),
            server_address,
            kubelet: std::sync::OnceLock::new(),
            tokens,
        })
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// The router: every path goes through [`dispatch`].
pub fn router(state: Arc<ApiState>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<Arc<ApiState>>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let upgrade = crate::upgrade_proxy::take_upgrade(&mut parts);
    let path = parts.uri.path().to_string();
    let query = query::Query::parse(parts.uri.query());
    let user = match parts.extensions.get::<auth::User>().cloned() {
        Some(user) => Ok(Some(user)),
        None => match auth::bearer_token(&parts.headers) {
            Some(token) => {
                tokens::authenticate::user_of(&state.rest, &state.tokens, token, &state.tokens.api_audiences)
                    .await
                    .map(|(user, _)| Some(user))
            }
            None => Ok(None),
        },
    };
    let target = request::parse(&path);
    let (verb, resource) = match &target {
        Ok(Target::Resource(r)) => (handlers::verb(&parts.method, r, &query), r.resource.plural),
        _ => (if parts.method == http::Method::GET { "get" } else { "other" }, ""),
    };
    let response = match user {
        Err(why) => {
            tracing::debug!(%path, %why, "bearer token refused");
            ApiError::unauthorized().into_response()
        }
        Ok(None) if !auth::is_public(&path) => ApiError::unauthorized().into_response(),
        Ok(user) => match target {
            // A bug must cost one request a 500, never the connection or the process.
            Ok(target) => {
                let serving = serve_target(&state, target, user.as_ref(), &parts, &query, body, upgrade);
                match AssertUnwindSafe(serving).catch_unwind().await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => e.into_response(),
                    Err(_) => {
                        tracing::error!(%path, "request handler panicked");
                        ApiError::internal("the request could not be served").into_response()
                    }
                }
            }
            Err(e) => e.into_response(),
        },
    };
    state.metrics.observe(verb, resource, response.status().as_u16(), started.elapsed());
    response
}

async fn serve_target(
    state: &ApiState,
    target: Target,
    user: Option<&auth::User>,
    parts: &http::request::Parts,
    query: &query::Query,
    body: Body,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response, ApiError> {
    let json = |v: serde_json::Value| negotiate::json_response(StatusCode::OK, &v, &[]);
    let is_get = parts.method == http::Method::GET || parts.method == http::Method::HEAD;
    if !is_get && !matches!(target, Target::Resource(_)) {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            parts.method
        )));
    }
    match target {
        Target::Version => Ok(json(discovery::version())),
        Target::LegacyRoot => Ok(match negotiate::aggregated_discovery(&parts.headers) {
            Some(v) => aggregated_response(discovery::aggregated(true, v), v),
            None => json(discovery::legacy_root(&state.server_address)),
        }),
        Target::GroupsRoot => Ok(match negotiate::aggregated_discovery(&parts.headers) {
            Some(v) => aggregated_response(discovery::aggregated(false, v), v),
            None => json(discovery::groups_root()),
        }),
        Target::Group(g) => discovery::group(&g)
            .map(json)
            .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource")),
        Target::GroupVersion(g, v) => Ok(json(discovery::resource_list(&g, &v))),
        Target::Healthz(check) => Ok(health::respond(state, &check, query)),
        Target::Metrics => Ok(text(state.metrics.render(&state.rest.store))),
        Target::OpenApiV3(None) => Ok(json(openapi::v3_index())),
        Target::OpenApiV3(Some(path)) => openapi::v3_group_version_json(&path)
            .map(|bytes| ([(http::header::CONTENT_TYPE, "application/json")], bytes).into_response())
            .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource")),
        Target::OpenApiV2 => Ok(openapi_v2(&parts.headers)),
        Target::ResourceMetrics(path) => {
            resource_metrics::serve(&state.rest, state.kubelet.get(), &path, query).await.map(json)
        }
        Target::Resource(path) if path.subresource.as_deref() == Some("log") => {
            let (ns, name) = (path.namespace.as_deref().unwrap_or(""), path.name.as_deref().unwrap_or(""));
            node_proxy::pod_log(&state.rest, state.kubelet.get(), ns, name, query).await
        }
        Target::Resource(path)
            if path.resource.plural == "pods"
                && matches!(path.subresource.as_deref(), Some("exec" | "attach" | "portforward")) =>
        {
            let (ns, name) = (path.namespace.as_deref().unwrap_or(""), path.name.as_deref().unwrap_or(""));
            let sub = path.subresource.as_deref().unwrap_or("");
            node_proxy::pod_stream(&state.rest, state.kubelet.get(), (ns, name, sub), query, parts, upgrade).await
        }
        Target::Resource(path) if !path.resource.is_stored() || is_token_request(&path) => {
            if parts.method != http::Method::POST || (path.name.is_some() != path.subresource.is_some()) {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({})",
                    parts.method
                )));
            }
            let body = negotiate::decode_body(&parts.headers, &read_body(body).await?)?;
            let answer = match (path.name.as_deref(), path.namespace.as_deref()) {
                (Some(name), Some(ns)) => tokens::request::create(&state.rest, &state.tokens, ns, name, body).await?,
                _ => reviews::create(state, path.resource, user, body).await?,
            };
            Ok(negotiate::json_response(StatusCode::CREATED, &answer, &[]))
        }
        Target::Resource(path) => {
            let bytes = read_body(body).await?;
            handlers::serve(&state.rest, &parts.method, path, query, &parts.headers, bytes).await
        }
    }
}

fn is_token_request(path: &request::ResourcePath) -> bool {
    path.subresource.as_deref() == Some("token")
        && path.resource.has_subresource(crate::core::registry::Subresource::Token)
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, negotiate::MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::too_large(format!("the request body is larger than {} bytes", negotiate::MAX_BODY_BYTES))
    })
}

fn aggregated_response(doc: serde_json::Value, version: &str) -> Response {
    let content_type = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    (StatusCode::OK, [(http::header::CONTENT_TYPE, content_type)], serde_json::to_vec(&doc).unwrap_or_default())
        .into_response()
}

fn text(body: String) -> Response {
    (StatusCode::OK, [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// /openapi/v2: an empty document (protobuf for clients that ask for it, which kubectl does): kubectl
/// then validates on the server through the fieldValidation parameter that /openapi/v3 advertises.
fn openapi_v2(headers: &http::HeaderMap) -> Response {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("protobuf") {
        (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")],
            Vec::new(),
        )
            .into_response()
    } else {
        let doc = serde_json::json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": format!("v1.{}.0", discovery::KUBE_MINOR)}, "paths": {}});
        negotiate::json_response(StatusCode::OK, &doc, &[])
    }
}
