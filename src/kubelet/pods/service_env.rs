//! The Service variables of a container's environment (upstream's service links): for the
//! `kubernetes` Service of the default namespace always, and for every Service of the pod's namespace
//! unless the pod sets `enableServiceLinks: false`: `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`,
//! `<NAME>_SERVICE_PORT_<PORT NAME>` and the Docker-link `<NAME>_PORT…` variables. Headless Services
//! have none. This is how in-cluster clients (client-go's InClusterConfig) find the API server.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// The Service variables of `pod`'s containers.
pub async fn variables(client: &Client, pod: &Pod) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let mut services: Vec<Service> = Vec::new();
    if links {
        let in_namespace: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let listed = in_namespace.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        services.extend(listed.items);
    }
    if !services.iter().any(|s| s.name_any() == "kubernetes") {
        let default: Api<Service> = Api::namespaced(client.clone(), "default");
        services.extend(default.get_opt("kubernetes").await.map_err(|e| e.to_string())?);
    }
    services.sort_by_key(|s| s.name_any());
    Ok(services.iter().flat_map(of_service).collect())
}

/// The variables `service` gives.
fn of_service(service: &Service) -> Vec<(String, String)> {
    let Some(spec) = &service.spec else { return vec![] };
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ip.is_empty() || ip == "None" || ports.is_empty() {
        return vec![];
    }
    let prefix = variable_name(&service.name_any());
    let mut vars = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_string()),
        (format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()),
    ];
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((format!("{prefix}_SERVICE_PORT_{}", variable_name(name)), port.port.to_string()));
        }
    }
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let url = format!("{}://{}", protocol.to_ascii_lowercase(), crate::core::net::join_host_port(ip, port.port));
        if i == 0 {
            vars.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_ascii_uppercase());
        vars.push((port_prefix.clone(), url));
        vars.push((format!("{port_prefix}_PROTO"), protocol.to_ascii_lowercase()));
        vars.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        vars.push((format!("{port_prefix}_ADDR"), ip.to_string()));
    }
    vars
}

fn variable_name(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("service")
    }

    #[test]
    fn a_service_gives_upstreams_variables() {
        let web = service(serde_json::json!({"metadata": {"name": "web-front"}, "spec": {"clusterIP": "10.43.0.9",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]}}));
        let vars = of_service(&web);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("WEB_FRONT_SERVICE_HOST"), Some("10.43.0.9"));
        assert_eq!(get("WEB_FRONT_SERVICE_PORT"), Some("80"));
        assert_eq!(get("WEB_FRONT_SERVICE_PORT_DNS_UDP"), Some("53"));
        assert_eq!(get("WEB_FRONT_PORT"), Some("tcp://10.43.0.9:80"));
        assert_eq!(get("WEB_FRONT_PORT_53_UDP"), Some("udp://10.43.0.9:53"));
        assert_eq!(get("WEB_FRONT_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("WEB_FRONT_PORT_80_TCP_ADDR"), Some("10.43.0.9"));
        assert_eq!(get("WEB_FRONT_PORT_80_TCP_PORT"), Some("80"));
        assert_eq!(vars.len(), 2 + 2 + 1 + 4 * 2);
    }

    #[test]
    fn headless_services_give_nothing() {
        let headless = service(
            serde_json::json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
        );
        assert!(of_service(&headless).is_empty());
    }
}
