//! Registry credentials for image pulls, from a pod's `imagePullSecrets` (upstream's kubelet keyring):
//! each `kubernetes.io/dockerconfigjson` (or legacy `kubernetes.io/dockercfg`) Secret's entries whose
//! key names the image's registry (a host, with a port and a path prefix if given, or a URL; docker.io's
//! aliases count as docker.io), as CRI AuthConfigs to try in turn, most specific first. A missing
//! Secret is skipped with a warning, as upstream does.

use base64::Engine;
use k8s_cri::v1::AuthConfig;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

/// docker.io as image references and docker config files spell it.
const DOCKER_HUB_ALIASES: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The credentials of `pod`'s pull secrets that apply to `image`.
pub async fn credentials(client: &Client, pod: &Pod, image: &str) -> Vec<AuthConfig> {
    let names = pod.spec.iter().flat_map(|s| s.image_pull_secrets.iter().flatten()).map(|r| r.name.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let mut found = Vec::new();
    for name in names.filter(|n| !n.is_empty()) {
        match secrets.get_opt(&name).await {
            Ok(Some(secret)) => found.extend(entries(&secret)),
            Ok(None) => tracing::warn!(pod = pod.name_any(), secret = name, "image pull secret not found"),
            Err(error) => tracing::warn!(pod = pod.name_any(), secret = name, %error, "cannot read image pull secret"),
        }
    }
    matching(found, image)
}

/// The `(registry key, entry)` pairs of a docker config Secret.
fn entries(secret: &Secret) -> Vec<(String, Value)> {
    let data = secret.data.clone().unwrap_or_default();
    let (key, nested) = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => (".dockerconfigjson", true),
        Some("kubernetes.io/dockercfg") => (".dockercfg", false),
        _ => return vec![],
    };
    let Some(bytes) = data.get(key) else { return vec![] };
    let Ok(config) = serde_json::from_slice::<Value>(&bytes.0) else { return vec![] };
    let auths = if nested { config.get("auths").cloned().unwrap_or(Value::Null) } else { config };
    auths.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

/// The registry host (with port) and path of an image reference.
fn registry_and_path(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or(image);
    match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            (first.to_ascii_lowercase(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    }
}

fn canonical_host(host: &str) -> &str {
    if DOCKER_HUB_ALIASES.contains(&host) {
        "docker.io"
    } else {
        host
    }
}

/// How specifically `key` (a docker config key) names the image at `host`/`path`: None when not at all.
fn specificity(key: &str, host: &str, path: &str) -> Option<usize> {
    let bare = key.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    let bare = bare.strip_suffix("/v1").or_else(|| bare.strip_suffix("/v2")).unwrap_or(bare);
    let (key_host, key_path) = bare.split_once('/').unwrap_or((bare, ""));
    let same_host = canonical_host(&key_host.to_ascii_lowercase()) == canonical_host(host);
    let path_ok = key_path.is_empty() || path == key_path || path.starts_with(&format!("{key_path}/"));
    (same_host && path_ok).then_some(key_path.len())
}

/// The entries that apply to `image`, most specific first, as CRI AuthConfigs.
fn matching(entries: Vec<(String, Value)>, image: &str) -> Vec<AuthConfig> {
    let (host, path) = registry_and_path(image);
    let mut scored: Vec<(usize, AuthConfig)> = entries
        .into_iter()
        .filter_map(|(key, entry)| Some((specificity(&key, &host, &path)?, auth_config(&entry))))
        .collect();
    scored.sort_by_key(|(specific, _)| std::cmp::Reverse(*specific));
    scored.into_iter().map(|(_, auth)| auth).collect()
}

/// The CRI form of a docker config entry. `server_address` stays empty: containerd would compare it
/// as a URL with the host it contacts (docker.io's is registry-1.docker.io) and drop the credentials.
fn auth_config(entry: &Value) -> AuthConfig {
    let text = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (mut username, mut password) = (text("username"), text("password"));
    // `auth` is base64 of `user:password`, and wins when the fields are empty.
    if username.is_empty() && password.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD.decode(text("auth")).unwrap_or_default();
        if let Some((user, pass)) = String::from_utf8_lossy(&decoded).split_once(':') {
            (username, password) = (user.to_string(), pass.to_string());
        }
    }
    AuthConfig {
        username,
        password,
        identity_token: text("identitytoken"),
        registry_token: text("registrytoken"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(kind: &str, key: &str, config: Value) -> Secret {
        let data = serde_json::to_vec(&config).expect("json");
        serde_json::from_value(
            json!({"type": kind, "data": {key: base64::engine::general_purpose::STANDARD.encode(data)}}),
        )
        .expect("secret")
    }

    #[test]
    fn entries_match_the_images_registry_most_specific_first() {
        let config = json!({"auths": {
            "registry.example:5000": {"username": "any", "password": "a"},
            "registry.example:5000/team": {"auth": base64::engine::general_purpose::STANDARD.encode("team:t")},
            "https://index.docker.io/v1/": {"username": "hub", "password": "h"},
            "other.example": {"username": "no", "password": "n"}
        }});
        let found = entries(&secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", config));
        let users = |image: &str| matching(found.clone(), image).into_iter().map(|a| a.username).collect::<Vec<_>>();
        assert_eq!(users("registry.example:5000/team/app:1"), ["team", "any"]);
        assert_eq!(users("registry.example:5000/teammate/app:1"), ["any"]);
        assert_eq!(users("busybox"), ["hub"]);
        assert_eq!(users("docker.io/library/busybox:1.36"), ["hub"]);
        assert!(users("quay.io/app").is_empty());
        let team = &matching(found, "registry.example:5000/team/app")[0];
        assert_eq!(team.password, "t");
    }

    #[test]
    fn legacy_dockercfg_and_other_secrets() {
        let legacy = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            json!({"localhost:5000": {"username": "u", "password": "p"}}),
        );
        assert_eq!(matching(entries(&legacy), "localhost:5000/app")[0].username, "u");
        let opaque = secret("Opaque", ".dockerconfigjson", json!({"auths": {"localhost:5000": {"username": "u"}}}));
        assert!(entries(&opaque).is_empty());
    }
}
