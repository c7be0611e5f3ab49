//! metrics.k8s.io/v1beta1 (what `kubectl top` reads), served by the API server itself: NodeMetrics and
//! PodMetrics built from the `/stats/summary` of every node's kubelet, read when asked (each kubelet
//! keeps rates over its last sampling window), as metrics-server would serve them.

use serde_json::{json, Map, Value};

use super::node_proxy::{self, KubeletClient};
use super::query::Query;
use super::rest::ListQuery;
use super::rest::Rest;
use super::status::{ApiError, ApiResult};
use crate::core::selector::LabelSelector;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
/// The window each kubelet's rates cover.
const WINDOW: &str = "10s";

/// What a metrics.k8s.io path asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsPath {
    /// `nodes` or `pods`.
    pub resource: &'static str,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Parses `/apis/metrics.k8s.io/v1beta1/…`; None for anything else under it.
pub fn parse(rest: &str) -> Option<MetricsPath> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let path = |resource, namespace: Option<&str>, name: Option<&str>| MetricsPath {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
    };
    match parts.as_slice() {
        ["nodes"] => Some(path("nodes", None, None)),
        ["nodes", name] => Some(path("nodes", None, Some(name))),
        ["pods"] => Some(path("pods", None, None)),
        ["namespaces", ns, "pods"] => Some(path("pods", Some(ns), None)),
        ["namespaces", ns, "pods", name] => Some(path("pods", Some(ns), Some(name))),
        _ => None,
    }
}

/// The resources of the group, for discovery: (plural, kind, namespaced).
pub const RESOURCES: &[(&str, &str, bool)] = &[("nodes", "NodeMetrics", false), ("pods", "PodMetrics", true)];

fn quantity_cpu(nanocores: u64) -> String {
    format!("{nanocores}n")
}

fn quantity_memory(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn usage(stats: &Value) -> Option<Value> {
    let cpu = stats["cpu"]["usageNanoCores"].as_u64()?;
    let memory = stats["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
    Some(json!({"cpu": quantity_cpu(cpu), "memory": quantity_memory(memory)}))
}

fn labels_of(object: &Value) -> Map<String, Value> {
    object["metadata"]["labels"].as_object().cloned().unwrap_or_default()
}

/// Serves a GET of `path`.
pub async fn serve(
    rest: &Rest,
    kubelet: Option<&KubeletClient>,
    path: &MetricsPath,
    query: &Query,
) -> ApiResult<Value> {
    let selector = match query.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(text) => LabelSelector::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => LabelSelector::everything(),
    };
    let nodes_info = Rest::core_resource("nodes")?;
    let mut nodes = rest.list(nodes_info, None, &ListQuery::default()).await?.items;
    // One node's metrics need only its kubelet.
    if let (Some(name), "nodes") = (&path.name, path.resource) {
        nodes.retain(|node| node["metadata"]["name"].as_str() == Some(name.as_str()));
    }
    let summaries = futures::future::join_all(nodes.iter().map(|node| node_proxy::node_summary(kubelet, node))).await;
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let item = |kind: &str, metadata: Value, timestamp: &Value, rest_of: (&str, Value)| {
        let mut object = json!({"kind": kind, "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": metadata,
            "timestamp": timestamp, "window": WINDOW});
        object[rest_of.0] = rest_of.1;
        object
    };
    let mut items = Vec::new();
    if path.resource == "nodes" {
        for (node, summary) in nodes.iter().zip(&summaries) {
            let (Some(summary), Some(name)) = (summary.as_ref().ok(), node["metadata"]["name"].as_str()) else {
                continue;
            };
            let Some(usage) = usage(&summary["node"]) else { continue };
            if path.name.as_deref().is_some_and(|n| n != name) || !selector.matches(&labels_of(node)) {
                continue;
            }
            let metadata = json!({"name": name, "creationTimestamp": now, "labels": labels_of(node)});
            items.push(item("NodeMetrics", metadata, &summary["node"]["cpu"]["time"], ("usage", usage)));
        }
    } else {
        let pods_info = Rest::core_resource("pods")?;
        let pods = rest.list(pods_info, path.namespace.as_deref(), &ListQuery::default()).await?.items;
        let by_uid: std::collections::HashMap<&str, &Value> =
            pods.iter().filter_map(|p| Some((p["metadata"]["uid"].as_str()?, p))).collect();
        for summary in summaries.iter().flatten() {
            for pod_stats in summary["pods"].as_array().into_iter().flatten() {
                let Some(pod) = pod_stats["podRef"]["uid"].as_str().and_then(|uid| by_uid.get(uid)) else { continue };
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                if path.name.as_deref().is_some_and(|n| n != name) || !selector.matches(&labels_of(pod)) {
                    continue;
                }
                let containers: Vec<Value> = pod_stats["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| Some(json!({"name": c["name"], "usage": usage(c)?})))
                    .collect();
                let timestamp = pod_stats["containers"][0]["cpu"]["time"].clone();
                let metadata = json!({"name": name, "namespace": pod["metadata"]["namespace"], "creationTimestamp": now,
                    "labels": labels_of(pod)});
                items.push(item("PodMetrics", metadata, &timestamp, ("containers", json!(containers))));
            }
        }
    }
    let (kind, plural) = match path.resource {
        "nodes" => ("NodeMetrics", "nodemetrics"),
        _ => ("PodMetrics", "podmetrics"),
    };
    match &path.name {
        Some(name) => {
            items.pop().ok_or_else(|| ApiError::new(404, "NotFound", format!("{plural}.{GROUP} {name:?} not found")))
        }
        None => Ok(json!({"kind": format!("{kind}List"), "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {}, "items": items})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_paths_name_nodes_and_pods() {
        assert_eq!(parse("/nodes").unwrap().resource, "nodes");
        let pod = parse("/namespaces/default/pods/web").unwrap();
        assert_eq!((pod.namespace.as_deref(), pod.name.as_deref()), (Some("default"), Some("web")));
        assert!(parse("/namespaces/default/services").is_none());
    }

    #[test]
    fn usage_is_nanocores_and_kibibytes() {
        let stats = json!({"cpu": {"usageNanoCores": 1500}, "memory": {"workingSetBytes": 4096}});
        assert_eq!(usage(&stats), Some(json!({"cpu": "1500n", "memory": "4Ki"})));
        assert_eq!(usage(&json!({})), None);
    }
}
