//! The kubelet API's streams: `/exec`, `/attach` and `/portForward`. Each asks the CRI for a streaming
//! URL on the runtime's own streaming server (containerd's, on the node's loopback) and passes the
//! client's upgrade request on to it, so the runtime speaks the stream protocols (SPDY/3.1, old
//! WebSocket ones) and the kubelet only joins the connections, as upstream's kubelet proxies to its
//! runtime; WebSocket protocols the runtime lacks are translated (`websocket.rs`).

mod websocket;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use k8s_cri::v1::{
    AttachRequest, ContainerState, ExecRequest, ListPodSandboxRequest, PodSandboxFilter, PodSandboxState,
    PodSandboxStateValue, PortForwardRequest,
};

use super::cri::Cri;
use super::pods::spec::{POD_NAME, POD_NAMESPACE};
use super::server::{newest_container, Api};
use crate::upgrade_proxy;

/// What a stream request asks for, from its query (kubectl's names, or upstream kubelet's).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct StreamOptions {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl StreamOptions {
    fn from_query(query: Option<&str>) -> StreamOptions {
        let mut options = StreamOptions::default();
        let yes = |v: &str| v == "true" || v == "1";
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "command" => options.command.push(value.into_owned()),
                "stdin" | "input" => options.stdin = yes(&value),
                "stdout" | "output" => options.stdout = yes(&value),
                "stderr" | "error" => options.stderr = yes(&value),
                "tty" => options.tty = yes(&value),
                _ => {}
            }
        }
        options
    }
}

fn failed(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// The running container's ID (and a CRI client to use on it), or the answer saying it is not running.
async fn running(api: &Api, namespace: &str, pod: &str, container: &str) -> Result<(Cri, String), Response> {
    let mut cri = api.cri.clone();
    match newest_container(&mut cri, namespace, pod, container, Some(ContainerState::ContainerRunning)).await {
        Some(id) => Ok((cri, id)),
        None => Err(failed(StatusCode::NOT_FOUND, format!("container {container:?} in pod {pod:?} is not running"))),
    }
}

/// GET or POST `/exec/<namespace>/<pod>/<container>?command=…`.
pub async fn exec(
    State(api): State<Arc<Api>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let mut options = StreamOptions::from_query(request.uri().query());
    if options.command.is_empty() {
        return failed(StatusCode::BAD_REQUEST, "no command given");
    }
    let (mut cri, id) = match running(&api, &namespace, &pod, &container).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let exec = ExecRequest {
        container_id: id,
        cmd: std::mem::take(&mut options.command),
        tty: options.tty,
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
    };
    match cri.runtime.exec(exec).await {
        Ok(answer) => to_runtime(request, &answer.into_inner().url, Some(options)).await,
        Err(status) => failed(StatusCode::INTERNAL_SERVER_ERROR, status.message()),
    }
}

/// GET or POST `/attach/<namespace>/<pod>/<container>`.
pub async fn attach(
    State(api): State<Arc<Api>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let options = StreamOptions::from_query(request.uri().query());
    let (mut cri, id) = match running(&api, &namespace, &pod, &container).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let attach = AttachRequest {
        container_id: id,
        stdin: options.stdin,
        tty: options.tty,
        stdout: options.stdout,
        stderr: options.stderr,
    };
    match cri.runtime.attach(attach).await {
        Ok(answer) => to_runtime(request, &answer.into_inner().url, Some(options)).await,
        Err(status) => failed(StatusCode::INTERNAL_SERVER_ERROR, status.message()),
    }
}

/// GET or POST `/portForward/<namespace>/<pod>`: the ports come in the stream requests themselves.
pub async fn port_forward(
    State(api): State<Arc<Api>>,
    Path((namespace, pod)): Path<(String, String)>,
    request: Request,
) -> Response {
    let mut cri = api.cri.clone();
    let filter = PodSandboxFilter {
        state: Some(PodSandboxStateValue { state: PodSandboxState::SandboxReady as i32 }),
        label_selector: HashMap::from([(POD_NAMESPACE.into(), namespace), (POD_NAME.into(), pod.clone())]),
        ..Default::default()
    };
    let sandboxes = match cri.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) }).await {
        Ok(answer) => answer.into_inner().items,
        Err(status) => return failed(StatusCode::INTERNAL_SERVER_ERROR, status.message()),
    };
    let Some(sandbox) = sandboxes.into_iter().max_by_key(|s| s.created_at) else {
        return failed(StatusCode::NOT_FOUND, format!("pod {pod:?} has no running sandbox"));
    };
    match cri.runtime.port_forward(PortForwardRequest { pod_sandbox_id: sandbox.id, port: vec![] }).await {
        Ok(answer) => to_runtime(request, &answer.into_inner().url, None).await,
        Err(status) => failed(StatusCode::INTERNAL_SERVER_ERROR, status.message()),
    }
}

/// Passes the upgrade request on to the runtime's streaming `url` (plain HTTP on the node's loopback),
/// or serves it by translation; `options` are exec's or attach's, None for port-forward.
async fn to_runtime(request: Request, url: &str, options: Option<StreamOptions>) -> Response {
    let (mut parts, _) = request.into_parts();
    let Some(client_side) = upgrade_proxy::take_upgrade(&mut parts) else {
        return upgrade_proxy::upgrade_required();
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the runtime gave an unusable streaming URL {url:?}"),
        );
    };
    let (Some(authority), Some(path)) = (uri.authority(), uri.path_and_query()) else {
        return failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the runtime gave an unusable streaming URL {url:?}"),
        );
    };
    if let Some(translation) = websocket::translation(&parts.headers, options.is_none()) {
        return websocket::serve(&parts, client_side, &uri, translation, options.unwrap_or_default()).await;
    }
    let unreachable =
        |e: String| failed(StatusCode::BAD_GATEWAY, format!("cannot reach the runtime's streaming server: {e}"));
    let tcp = match tokio::net::TcpStream::connect(authority.as_str()).await {
        Ok(tcp) => tcp,
        Err(error) => return unreachable(error.to_string()),
    };
    upgrade_proxy::forward(&parts, client_side, tcp, authority.as_str(), path.as_str(), unreachable).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_options_read_kubectls_names_and_the_kubelets() {
        let options =
            StreamOptions::from_query(Some("command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&tty=1"));
        assert_eq!(options.command, ["sh", "-c", "echo hi"]);
        assert!(options.stdin && options.stdout && options.tty && !options.stderr);
        let upstream = StreamOptions::from_query(Some("command=ls&input=1&output=1&error=1"));
        assert!(upstream.stdin && upstream.stdout && upstream.stderr && !upstream.tty);
    }
}
