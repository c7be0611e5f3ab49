//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: the API server asks the kubelet of the
//! pod's node (its InternalIP and kubelet port from the Node) over HTTPS with its kubelet-client
//! certificate, checking the kubelet's certificate against the cluster CA, and streams the answer back
//! (or, for the upgraded connections of exec, attach and port-forward, joins them), as upstream does.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use super::query::Query;
use super::rest::Rest;
use super::status::{ApiError, ApiResult};

/// The log options the kubelet understands, passed on as given.
const LOG_OPTIONS: &[&str] =
    &["follow", "previous", "timestamps", "tailLines", "limitBytes", "sinceSeconds", "sinceTime"];

/// How the API server reaches kubelets.
pub struct KubeletClient {
    pub tls: Arc<rustls::ClientConfig>,
}

impl KubeletClient {
    /// Trusts kubelets whose certificates the cluster CA signed; authenticates with what `identity` holds.
    pub fn new(ca_pem: &str, identity: Arc<crate::pki::LiveIdentity>) -> Result<KubeletClient, super::serve::TlsError> {
        Ok(KubeletClient { tls: Arc::new(super::serve::client_tls_config_with(ca_pem, identity)?) })
    }
}

/// Where a node's kubelet listens: its InternalIP and daemonEndpoints port.
fn kubelet_address(node: &Value) -> Option<(String, u16)> {
    let addresses = node["status"]["addresses"].as_array()?;
    let ip = addresses.iter().find(|a| a["type"] == "InternalIP").and_then(|a| a["address"].as_str())?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap_or(10250);
    Some((ip.to_string(), u16::try_from(port).ok()?))
}

/// The container a log request means: the one named, or the pod's only one.
fn container_of(pod: &Value, name: &str, query: &Query) -> ApiResult<String> {
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["initContainers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match query.get("container").filter(|c| !c.is_empty()) {
        Some(container) if names.contains(&container) => Ok(container.to_string()),
        Some(container) => Err(ApiError::bad_request(format!("container {container} is not valid for pod {name}"))),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// The pod, and where the kubelet of its node listens (with the node's name).
async fn kubelet_of(rest: &Rest, ns: &str, name: &str) -> ApiResult<(Value, String, u16, String)> {
    let (pods, nodes) = (Rest::core_resource("pods")?, Rest::core_resource("nodes")?);
    let pod = rest.get(pods, Some(ns), name).await?;
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?
        .to_string();
    let node = rest.get(nodes, None, &node_name).await?;
    let (ip, port) = kubelet_address(&node)
        .ok_or_else(|| ApiError::new(503, "ServiceUnavailable", format!("node {node_name} has no InternalIP")))?;
    Ok((pod, ip, port, node_name))
}

fn unreachable(node_name: &str, error: String) -> ApiError {
    ApiError::new(502, "BadGateway", format!("cannot reach the kubelet of node {node_name}: {error}"))
}

/// GET pods/<name>/log.
pub async fn pod_log(
    rest: &Rest,
    kubelet: Option<&KubeletClient>,
    ns: &str,
    name: &str,
    query: &Query,
) -> ApiResult<Response> {
    let (pod, ip, port, node_name) = kubelet_of(rest, ns, name).await?;
    let container = container_of(&pod, name, query)?;
    let kubelet = kubelet.ok_or_else(no_client)?;
    let passed: Vec<(&str, &str)> = query.pairs().filter(|(k, _)| LOG_OPTIONS.contains(k)).collect();
    let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(passed).finish();
    let path = format!("/containerLogs/{ns}/{name}/{container}?{encoded}");
    let stream = connect(kubelet, &ip, port).await.map_err(|e| unreachable(&node_name, e))?;
    let response = crate::http_client::get(stream, &format!("{ip}:{port}"), &path, &[])
        .await
        .map_err(|e| unreachable(&node_name, e))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_string();
        return Err(ApiError::new(
            status.as_u16(),
            if status.as_u16() == 404 { "NotFound" } else { "BadRequest" },
            message,
        ));
    }
    let body = axum::body::Body::new(response.into_body());
    Ok(([(http::header::CONTENT_TYPE, "text/plain")], body).into_response())
}

/// pods/<name>/exec, /attach and /portforward (`subresource`): the client's upgrade request passed on to
/// the kubelet, whose streams then flow through unchanged.
pub async fn pod_stream(
    rest: &Rest,
    kubelet: Option<&KubeletClient>,
    path: (&str, &str, &str),
    query: &Query,
    parts: &http::request::Parts,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> ApiResult<Response> {
    let (ns, name, subresource) = path;
    let (pod, ip, port, node_name) = kubelet_of(rest, ns, name).await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot {subresource} into a container in a completed pod; current phase is {phase}"
        )));
    }
    let kubelet_path = match subresource {
        "portforward" => format!("/portForward/{ns}/{name}"),
        _ => format!("/{subresource}/{ns}/{name}/{}", container_of(&pod, name, query)?),
    };
    // Passed on as it came: `command` repeats, which the parsed query would not keep.
    let raw_query = parts.uri.query().unwrap_or_default();
    let Some(upgrade) = upgrade else {
        return Ok(crate::upgrade_proxy::upgrade_required());
    };
    let kubelet = kubelet.ok_or_else(no_client)?;
    let stream = connect(kubelet, &ip, port).await.map_err(|e| unreachable(&node_name, e))?;
    let failed = |e: String| unreachable(&node_name, e).into_response();
    let authority = format!("{ip}:{port}");
    Ok(crate::upgrade_proxy::forward(
        parts,
        upgrade,
        stream,
        &authority,
        &format!("{kubelet_path}?{raw_query}"),
        failed,
    )
    .await)
}

/// The `/stats/summary` of `node`'s kubelet (within 5 s).
pub async fn node_summary(kubelet: Option<&KubeletClient>, node: &Value) -> Result<Value, String> {
    let kubelet = kubelet.ok_or("no kubelet client is configured")?;
    let (ip, port) = kubelet_address(node).ok_or("the node has no InternalIP")?;
    let fetch = async {
        let stream = connect(kubelet, &ip, port).await?;
        let response = crate::http_client::get(stream, &format!("{ip}:{port}"), "/stats/summary", &[]).await?;
        if !response.status().is_success() {
            return Err(format!("the kubelet answered {}", response.status()));
        }
        let body = crate::http_client::body(response, 16 * 1024 * 1024).await?;
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), fetch).await.map_err(|_| "timed out".to_string())?
}

fn no_client() -> ApiError {
    ApiError::new(503, "ServiceUnavailable", "no kubelet client is configured")
}

/// A TLS connection to a kubelet, its certificate checked against the cluster CA.
async fn connect(
    kubelet: &KubeletClient,
    ip: &str,
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect((ip, port)).await.map_err(|e| e.to_string())?;
    crate::http_client::tls(tcp, ip, kubelet.tls.clone()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kubelet_is_reached_at_the_internal_ip_and_its_port() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(kubelet_address(&node), Some(("10.0.0.5".to_string(), 10250)));
        assert_eq!(kubelet_address(&json!({"status": {}})), None);
    }

    #[test]
    fn a_pod_with_several_containers_needs_one_named() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let error = container_of(&pod, "p", &Query::parse(None)).expect_err("ambiguous");
        assert_eq!(error.message, "a container name must be specified for pod p, choose one of: [a b]");
        assert_eq!(container_of(&pod, "p", &Query::parse(Some("container=b"))).expect("named"), "b");
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(container_of(&single, "p", &Query::parse(None)).expect("only"), "only");
    }
}
