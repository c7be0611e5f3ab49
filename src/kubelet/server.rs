//! The kubelet's HTTPS API on port 10250, for the API server's proxy: `/healthz`,
//! `/containerLogs/<namespace>/<pod>/<container>` with `kubectl logs`' options, and the streams of
//! exec, attach and port-forward (`streaming/`), and `/stats/summary` (`stats.rs`). Clients must present a
//! certificate of the cluster CA (the API server's kubelet-client certificate).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use k8s_cri::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest, ListContainersRequest,
};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

use super::cri::Cri;
use super::logs::{self, LogOptions};
use super::pods::spec::{CONTAINER_NAME, POD_NAME, POD_NAMESPACE};
use super::stats;
use super::streaming;
use crate::apiserver::auth::User;

/// The kubelet's port (upstream's default).
pub const PORT: u16 = 10250;

/// The certificates the kubelet serves with and trusts; the serving one replaceable while it runs.
#[derive(Debug, Clone)]
pub struct KubeletTls {
    pub ca_pem: String,
    pub serving: Arc<crate::pki::LiveIdentity>,
}

/// Serves on `address` until `stop` turns true; `client` reads pods for `--previous`, `stats` is what
/// `/stats/summary` shows.
pub async fn run(
    address: SocketAddr,
    tls: KubeletTls,
    cri: Cri,
    client: kube::Client,
    stats: Arc<stats::Latest>,
    mut stop: watch::Receiver<bool>,
) {
    let config = match crate::apiserver::serve::tls_config_with(&tls.ca_pem, tls.serving) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "the kubelet API cannot start");
            return;
        }
    };
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, %address, "the kubelet API cannot listen; logs and exec will not work");
            return;
        }
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats/summary", get(summary))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/exec/{namespace}/{pod}/{container}", get(streaming::exec).post(streaming::exec))
        .route("/attach/{namespace}/{pod}/{container}", get(streaming::attach).post(streaming::attach))
        .route("/portForward/{namespace}/{pod}", get(streaming::port_forward).post(streaming::port_forward))
        .layer(axum::middleware::from_fn(require_client_certificate))
        .with_state(Arc::new(Api { cri, client, stats }));
    crate::apiserver::serve::serve(listener, config, app, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await;
}

async fn require_client_certificate(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.extensions().get::<User>().is_none() {
        return (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    }
    next.run(request).await
}

/// What the kubelet API needs.
pub(super) struct Api {
    pub(super) cri: Cri,
    client: kube::Client,
    stats: Arc<stats::Latest>,
}

/// GET `/stats/summary`: the newest sample, once there is one.
async fn summary(State(api): State<Arc<Api>>) -> Response {
    match api.stats.get() {
        Some(summary) => ([(http::header::CONTENT_TYPE, "application/json")], summary.to_string()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no stats sampled yet\n").into_response(),
    }
}

/// The container `lastState` names in the pod's status (what upstream's `--previous` reads).
async fn previous_container(client: &kube::Client, namespace: &str, pod: &str, container: &str) -> Option<String> {
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let status = pods.get_opt(pod).await.ok()??.status?;
    let all =
        status.container_statuses.into_iter().flatten().chain(status.init_container_statuses.into_iter().flatten());
    let named = all.into_iter().find(|c| c.name == container)?;
    let id = named.last_state?.terminated?.container_id?;
    Some(id.rsplit("://").next()?.to_string())
}

/// The log file of the container's newest attempt, or with `previous` of the one its status shows as
/// lastState; with the container's ID.
async fn log_file(api: &Api, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<(String, String)> {
    let mut cri = api.cri.clone();
    let chosen = match previous {
        true => previous_container(&api.client, namespace, pod, container).await?,
        false => newest_container(&mut cri, namespace, pod, container, None).await?,
    };
    let status = cri
        .runtime
        .container_status(ContainerStatusRequest { container_id: chosen.clone(), verbose: false })
        .await
        .ok()?
        .into_inner()
        .status?;
    Some((status.log_path, chosen))
}

/// The ID of the container's newest attempt in the runtime (in `state`, if given).
pub(super) async fn newest_container(
    cri: &mut Cri,
    namespace: &str,
    pod: &str,
    container: &str,
    state: Option<ContainerState>,
) -> Option<String> {
    let labels = HashMap::from([
        (POD_NAMESPACE.to_string(), namespace.to_string()),
        (POD_NAME.to_string(), pod.to_string()),
        (CONTAINER_NAME.to_string(), container.to_string()),
    ]);
    let state = state.map(|state| ContainerStateValue { state: state as i32 });
    let filter = ContainerFilter { label_selector: labels, state, ..Default::default() };
    let mut listed =
        cri.runtime.list_containers(ListContainersRequest { filter: Some(filter) }).await.ok()?.into_inner().containers;
    listed.sort_by_key(|c| c.created_at);
    listed.pop().map(|c| c.id)
}

async fn container_logs(
    State(api): State<Arc<Api>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let options =
        match LogOptions::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), jiff::Timestamp::now()) {
            Ok(options) => options,
            Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
        };
    let Some((path, id)) = log_file(&api, &namespace, &pod, &container, options.previous).await else {
        let what = if options.previous { "previous terminated container" } else { "container" };
        let message = format!("{what} \"{container}\" in pod \"{pod}\" not found");
        return (StatusCode::NOT_FOUND, message).into_response();
    };
    let running = move || {
        let mut cri = api.cri.clone();
        let id = id.clone();
        async move {
            let request = ContainerStatusRequest { container_id: id, verbose: false };
            cri.runtime
                .container_status(request)
                .await
                .ok()
                .and_then(|r| r.into_inner().status)
                .is_some_and(|s| s.state == ContainerState::ContainerRunning as i32)
        }
    };
    let body = axum::body::Body::from_stream(logs::stream(path.into(), options, running));
    ([(http::header::CONTENT_TYPE, "text/plain")], body).into_response()
}
