//! The objects every cluster has, created at each start when missing through the REST layer: the
//! default, kube-system, kube-public and kube-node-lease namespaces with their `default`
//! ServiceAccounts (so pods can be created the moment the server is ready, before the service account
//! controller runs), the `kubernetes` Service (its endpoints are the servers, see `super::endpoints`),
//! and the `kube-dns` Service of the embedded cluster DNS.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::apiserver::rest::{Rest, WriteContext};
use crate::apiserver::status::ApiResult;
use crate::core::registry;

/// Creates `obj` unless it exists.
async fn ensure(rest: &Rest, group: &str, plural: &str, ns: Option<&str>, obj: Value) -> ApiResult<()> {
    let res = registry::find(group, "v1", plural)
        .ok_or_else(|| crate::apiserver::status::ApiError::internal(format!("unknown resource {plural}")))?;
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut ctx = WriteContext::default();
    match rest.get(res, ns, &name).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => rest.create(res, ns, obj, &mut ctx).await.map(|_| ()),
        Err(e) => Err(e),
    }
}

/// Creates the default objects; `port` is where the API server listens; `cluster_dns` is the embedded
/// DNS's Service address, unless it is disabled.
pub async fn run(rest: &Rest, service_cidr: IpNet, port: u16, cluster_dns: Option<IpAddr>) -> ApiResult<()> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(rest, "", "namespaces", None, json!({"metadata": {"name": ns}})).await?;
        ensure(rest, "", "serviceaccounts", Some(ns), json!({"metadata": {"name": "default"}})).await?;
    }
    let cluster_ip = service_cidr.hosts().next().map(|ip| ip.to_string()).unwrap_or_default();
    let service = json!({
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    ensure(rest, "", "services", Some("default"), service).await?;
    if let Some(cluster_dns) = cluster_dns {
        ensure(rest, "", "services", Some("kube-system"), dns_service(cluster_dns)).await?;
    }
    Ok(())
}

/// The embedded DNS's Service: no selector (its endpoints are the nodes, see
/// `controllers::cluster_dns`), and each node's pods ask their own node.
fn dns_service(cluster_dns: IpAddr) -> Value {
    json!({
        "metadata": {"name": crate::controllers::cluster_dns::SERVICE, "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_dns.to_string(), "internalTrafficPolicy": "Local",
                 "ports": crate::controllers::cluster_dns::ports()},
    })
}
