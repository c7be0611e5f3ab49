//! The values a container's environment takes from the API: the Services' variables,
//! `env[].valueFrom` configMapKeyRef and secretKeyRef, and `envFrom` ConfigMaps and Secrets (with
//! their prefix). A missing source that is not optional stops the container from being created, with
//! upstream's CreateContainerConfigError message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::{Client, ResourceExt};

use crate::kubelet::sources;

/// What the API supplies to one container's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The Services' variables (`KUBERNETES_SERVICE_HOST`…), overridden by anything the pod sets.
    pub services: Vec<(String, String)>,
    /// `env[].valueFrom` values, by variable name.
    pub refs: BTreeMap<String, String>,
    /// `envFrom` variables, in order (later sources win).
    pub sources: Vec<(String, String)>,
}

/// A source's keys as text, as the environment takes them.
fn as_text(data: Option<BTreeMap<String, Vec<u8>>>) -> Option<BTreeMap<String, String>> {
    data.map(|d| d.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect())
}

async fn config_map(client: &Client, namespace: &str, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
    sources::config_map(client, namespace, name).await.map(as_text)
}

async fn secret(client: &Client, namespace: &str, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
    sources::secret(client, namespace, name).await.map(as_text)
}

/// Reads what the environment of `pod`'s `container` refers to.
pub async fn resolve(client: &Client, pod: &Pod, container: &Container) -> Result<Resolved, String> {
    let namespace = &pod.namespace().unwrap_or_default();
    let mut resolved = Resolved { services: super::service_env::variables(client, pod).await?, ..Resolved::default() };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (data, kind, name, optional) = if let Some(r) = &source.config_map_ref {
            (config_map(client, namespace, &r.name).await?, "configmap", &r.name, r.optional.unwrap_or(false))
        } else if let Some(r) = &source.secret_ref {
            (secret(client, namespace, &r.name).await?, "secret", &r.name, r.optional.unwrap_or(false))
        } else {
            continue;
        };
        match data {
            Some(data) => resolved.sources.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v))),
            None if optional => {}
            None => return Err(format!("{kind} \"{name}\" not found")),
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else { continue };
        let (data, kind, name, key, optional) = if let Some(r) = &from.config_map_key_ref {
            (config_map(client, namespace, &r.name).await?, "configmap", &r.name, &r.key, r.optional.unwrap_or(false))
        } else if let Some(r) = &from.secret_key_ref {
            (secret(client, namespace, &r.name).await?, "secret", &r.name, &r.key, r.optional.unwrap_or(false))
        } else {
            continue;
        };
        match (data.as_ref().and_then(|d| d.get(key)), data.is_some()) {
            (Some(value), _) => {
                resolved.refs.insert(var.name.clone(), value.clone());
            }
            _ if optional => {}
            (None, true) => return Err(format!("couldn't find key {key} in {kind} {namespace}/{name}")),
            (None, false) => return Err(format!("{kind} \"{name}\" not found")),
        }
    }
    Ok(resolved)
}
