//! From a Pod to what the CRI is asked to run: the sandbox config (metadata, hostname, log directory,
//! DNS, host ports, host namespaces) and each container's config (image, command and args with
//! `$(VAR)` expanded, working dir, env from values and the pod's own fields, labels the kubelet finds
//! it by again, log path). Pure: everything the CRI needs is computed here from the Pod.

use std::collections::HashMap;
use std::path::Path;

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, DnsConfig, ImageSpec, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use super::env::Resolved;
use kube::ResourceExt;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// The labels that tie a sandbox to its pod.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME.to_string(), pod.name_any()),
        (POD_NAMESPACE.to_string(), pod.namespace().unwrap_or_default()),
        (POD_UID.to_string(), pod.uid().unwrap_or_default()),
    ])
}

/// The directory of the pod's logs: `<logs_root>/<namespace>_<name>_<uid>`.
pub fn log_directory(logs_root: &Path, pod: &Pod) -> String {
    let dir = format!("{}_{}_{}", pod.namespace().unwrap_or_default(), pod.name_any(), pod.uid().unwrap_or_default());
    logs_root.join(dir).to_string_lossy().into_owned()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// The sandbox for attempt `attempt` of the pod.
pub fn sandbox_config(pod: &Pod, attempt: u32, logs_root: &Path, dns: Option<DnsConfig>) -> PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = if host_network(pod) {
        String::new()
    } else {
        spec.hostname.clone().unwrap_or_else(|| pod.name_any()).chars().take(63).collect()
    };
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| PortMapping {
            protocol: protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let namespaces = namespace_options(pod);
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            namespace: pod.namespace().unwrap_or_default(),
            attempt,
        }),
        hostname,
        log_directory: log_directory(logs_root, pod),
        dns_config: dns,
        port_mappings,
        labels: pod_labels(pod),
        annotations: pod.annotations().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's namespaces, the same for its sandbox and each container: the host's network, PID and IPC
/// when asked, else the pod's (PID: each container its own unless shareProcessNamespace).
fn namespace_options(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let node_or_pod = |host: bool| if host { NamespaceMode::Node } else { NamespaceMode::Pod } as i32;
    NamespaceOption {
        network: node_or_pod(host_network(pod)),
        pid: if spec.host_pid.unwrap_or(false) {
            NamespaceMode::Node as i32
        } else if spec.share_process_namespace.unwrap_or(false) {
            NamespaceMode::Pod as i32
        } else {
            NamespaceMode::Container as i32
        },
        ipc: node_or_pod(spec.host_ipc.unwrap_or(false)),
        ..Default::default()
    }
}

/// The container's security settings: its own securityContext over the pod's (user, group), the pod's
/// supplemental groups and fsGroup, capabilities added and dropped, privileged, read-only root,
/// no new privileges when escalation is disallowed, and the pod's namespaces.
fn security_context(pod: &Pod, container: &Container) -> LinuxContainerSecurityContext {
    let own = container.security_context.clone().unwrap_or_default();
    let pod_level = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let id = |value: Option<i64>| value.map(|value| Int64Value { value });
    let capabilities = own.capabilities.as_ref().map(|c| Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    let mut groups = pod_level.supplemental_groups.clone().unwrap_or_default();
    groups.extend(pod_level.fs_group);
    LinuxContainerSecurityContext {
        capabilities,
        privileged: own.privileged.unwrap_or(false),
        namespace_options: Some(namespace_options(pod)),
        run_as_user: id(own.run_as_user.or(pod_level.run_as_user)),
        run_as_group: id(own.run_as_group.or(pod_level.run_as_group)),
        readonly_rootfs: own.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: groups,
        no_new_privs: own.allow_privilege_escalation == Some(false),
        ..Default::default()
    }
}

fn protocol(name: Option<&str>) -> Protocol {
    match name {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// The value of a `fieldRef` the kubelet resolves from the pod itself.
pub(crate) fn field_value(pod: &Pod, path: &str, node_name: &str, host_ip: &str, pod_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some(node_name.to_string()),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.hostIP" => Some(host_ip.to_string()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
        _ => {
            let (map, key) = path.strip_suffix("']")?.split_once("['")?;
            match map {
                "metadata.labels" => meta.labels.as_ref()?.get(key).cloned(),
                "metadata.annotations" => meta.annotations.as_ref()?.get(key).cloned(),
                _ => None,
            }
        }
    }
}

/// Where the pod runs, for env values that name it.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub node_name: String,
    pub host_ip: String,
    pub pod_ip: String,
    /// The node's allocatable resources (the limits a container leaves unset).
    pub allocatable: std::sync::Arc<serde_json::Value>,
}

/// The container's environment: first the Services' variables, then `envFrom` (as resolved), then
/// `env`: `value`s (with `$(VAR)` of earlier entries expanded), `fieldRef`s, and ConfigMap and Secret
/// keys (as resolved); a later entry replaces an earlier one of the same name.
pub fn environment(pod: &Pod, container: &Container, at: &Placement, resolved: &Resolved) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (name, value) in resolved.services.iter().chain(&resolved.sources) {
        env.retain(|(n, _)| n != name);
        env.push((name.clone(), value.clone()));
    }
    for var in container.env.iter().flatten() {
        let EnvVar { name, value, value_from } = var;
        let value = match (value, value_from) {
            (Some(value), _) => Some(expand(value, &env)),
            (None, Some(from)) => match (&from.field_ref, &from.resource_field_ref) {
                (Some(field), _) => field_value(pod, &field.field_path, &at.node_name, &at.host_ip, &at.pod_ip),
                (None, Some(selector)) => {
                    match super::resource_field::value(pod, &container.name, selector, &at.allocatable) {
                        Ok(value) => Some(value),
                        Err(error) => {
                            tracing::warn!(%error, variable = name, "resourceFieldRef left unset");
                            None
                        }
                    }
                }
                (None, None) => resolved.refs.get(name).cloned(),
            },
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            env.retain(|(n, _)| n != name);
            env.push((name.clone(), value));
        }
    }
    env
}

/// `$(VAR)` replaced by VAR's value where VAR is defined, `$$` by `$`, anything else kept as written
/// (upstream's expansion rules).
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(n, _)| n == name) {
                        Some((_, value)) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Attempt `attempt` of `container`, with its environment already resolved.
pub fn container_config(pod: &Pod, container: &Container, attempt: u32, env: &[(String, String)]) -> ContainerConfig {
    let expand_all = |items: &Option<Vec<String>>| items.iter().flatten().map(|s| expand(s, env)).collect();
    let mut labels = pod_labels(pod);
    labels.insert(CONTAINER_NAME.to_string(), container.name.clone());
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: container.name.clone(), attempt }),
        image: Some(ImageSpec { image: container.image.clone().unwrap_or_default(), ..Default::default() }),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env.iter().map(|(key, value)| KeyValue { key: key.clone(), value: value.clone() }).collect(),
        labels,
        log_path: format!("{}/{attempt}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources(container)),
            security_context: Some(security_context(pod, container)),
        }),
        ..Default::default()
    }
}

/// The container's OOM score adjustment by its pod's QoS class, as upstream sets it: Guaranteed pods are
/// killed last (-997), BestEffort first (1000), Burstable by the share of the machine's memory
/// (`memory_bytes`) the container requests (between 3 and 999).
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_bytes: u64) -> i64 {
    match super::status::qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
            let request = requests
                .and_then(|r| r.get("memory"))
                .and_then(|q| crate::core::quantity::parse_whole(&q.0).ok())
                .unwrap_or(0)
                .max(0);
            let share = 1000 - (1000 * request) / i128::from(memory_bytes.max(1));
            share.clamp(3, 999) as i64
        }
    }
}

/// The CFS period the kubelet uses (100 ms), in microseconds.
const CPU_PERIOD: i64 = 100_000;
/// The smallest CPU shares and quota the kubelet sets.
const MIN_SHARES: i64 = 2;
const MIN_QUOTA: i64 = 1_000;

/// The container's requests and limits as cgroup settings, as upstream's kubelet converts them: CPU
/// shares from the request (the limit when no request is given), a CFS quota from the CPU limit, the
/// memory limit in bytes.
pub fn resources(container: &Container) -> LinuxContainerResources {
    let requirements = container.resources.as_ref();
    let limits = requirements.and_then(|r| r.limits.clone()).unwrap_or_default();
    let requests = requirements.and_then(|r| r.requests.clone()).unwrap_or_default();
    let milli = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.and_then(|q| crate::core::quantity::parse_milli(&q.0).ok()).map(|m| m.clamp(0, i128::from(i64::MAX)) as i64)
    };
    let cpu_limit = milli(limits.get("cpu"));
    let cpu_request = milli(requests.get("cpu")).or(cpu_limit).unwrap_or(0);
    let memory_limit = limits
        .get("memory")
        .and_then(|q| crate::core::quantity::parse_whole(&q.0).ok())
        .map_or(0, |b| b.clamp(0, i128::from(i64::MAX)) as i64);
    LinuxContainerResources {
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD } else { 0 },
        cpu_quota: cpu_limit.map_or(0, |m| (m * CPU_PERIOD / 1000).max(MIN_QUOTA)),
        cpu_shares: (cpu_request * 1024 / 1000).max(MIN_SHARES),
        memory_limit_in_bytes: memory_limit,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "tug.local/busybox:1",
                "command": ["sh", "-c"], "args": ["echo $(GREETING) $$(HOME) $(MISSING)"],
                "env": [{"name": "GREETING", "value": "hello"},
                        {"name": "WHO", "value": "$(GREETING) world"},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "FROM_MAP", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}}],
                "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]}
        }))
        .expect("pod")
    }

    #[test]
    fn the_oom_score_follows_the_qos_class() {
        let pod_with = |resources: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c", "resources": resources}]}}))
                .unwrap()
        };
        let gib = 1 << 30;
        let score = |pod: &Pod| oom_score_adj(pod, &pod.spec.as_ref().unwrap().containers[0], 4 * gib);
        assert_eq!(score(&pod_with(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), -997);
        assert_eq!(score(&pod_with(serde_json::json!({}))), 1000);
        assert_eq!(score(&pod_with(serde_json::json!({"requests": {"memory": "1Gi"}}))), 750);
        assert_eq!(score(&pod_with(serde_json::json!({"requests": {"memory": "8Gi"}}))), 3);
        assert_eq!(score(&pod_with(serde_json::json!({"requests": {"cpu": "1"}}))), 999);
    }

    #[test]
    fn requests_and_limits_become_cgroup_settings_as_upstream_converts_them() {
        let container: Container = serde_json::from_value(json!({"name": "c",
            "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}))
        .expect("container");
        let limits = resources(&container);
        assert_eq!((limits.cpu_shares, limits.cpu_quota, limits.cpu_period), (256, 50_000, 100_000));
        assert_eq!(limits.memory_limit_in_bytes, 64 << 20);
        let best_effort = resources(&serde_json::from_value(json!({"name": "c"})).expect("container"));
        assert_eq!((best_effort.cpu_shares, best_effort.cpu_quota, best_effort.memory_limit_in_bytes), (2, 0, 0));
    }

    #[test]
    fn expansion_follows_upstreams_rules() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$-$(", &env), "1-$(B)-$(A)-$-$(");
    }

    #[test]
    fn the_environment_resolves_values_and_the_pods_own_fields() {
        let pod = pod();
        let at = Placement {
            node_name: "n".into(),
            host_ip: "10.0.0.1".into(),
            pod_ip: "10.42.0.5".into(),
            allocatable: std::sync::Arc::new(serde_json::json!({"cpu": "2"})),
        };
        let resolved = Resolved {
            services: vec![("KUBERNETES_SERVICE_HOST".into(), "10.43.0.1".into()), ("EXTRA".into(), "service".into())],
            refs: BTreeMap::from([("FROM_MAP".to_string(), "mapped".to_string())]),
            sources: vec![("WHO".to_string(), "overridden by env".to_string()), ("EXTRA".to_string(), "x".to_string())],
        };
        let env = environment(&pod, &pod.spec.as_ref().expect("spec").containers[0], &at, &resolved);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("WHO"), Some("hello world"));
        assert_eq!(get("POD"), Some("web-1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("IP"), Some("10.42.0.5"));
        assert_eq!(get("EXTRA"), Some("x"), "envFrom comes after the services' variables, before env");
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        assert_eq!(get("FROM_MAP"), Some("mapped"));
    }

    #[test]
    fn the_container_config_carries_expanded_args_labels_and_log_path() {
        let pod = pod();
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let env = vec![("GREETING".to_string(), "hello".to_string())];
        let config = container_config(&pod, container, 2, &env);
        assert_eq!(config.args, ["echo hello $(HOME) $(MISSING)"]);
        assert_eq!(config.labels[CONTAINER_NAME], "app");
        assert_eq!(config.labels[POD_UID], "u-1");
        assert_eq!(config.log_path, "app/2.log");
        assert_eq!(config.metadata.expect("metadata").attempt, 2);
    }

    #[test]
    fn the_sandbox_maps_host_ports_and_names_its_log_directory() {
        let config = sandbox_config(&pod(), 0, Path::new("/var/log/pods"), None);
        assert_eq!(config.hostname, "web-1");
        assert_eq!(config.log_directory, "/var/log/pods/shop_web-1_u-1");
        assert_eq!(config.port_mappings.len(), 1);
        assert_eq!(config.port_mappings[0].host_port, 8080);
        let namespaces = config.linux.and_then(|l| l.security_context).and_then(|s| s.namespace_options).expect("ns");
        assert_eq!(namespaces.network, NamespaceMode::Pod as i32);
    }
}
