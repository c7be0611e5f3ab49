//! The ConfigMaps and Secrets a pod refers to (for its environment and its volumes), read from the API
//! at the moment they are needed: their keys with their bytes, or None when the object is missing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

/// A ConfigMap's `data` and `binaryData` together.
pub async fn config_map(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(|e| e.to_string())?;
    Ok(found.map(|c| {
        let text = c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes()));
        text.chain(c.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0))).collect()
    }))
}

/// A Secret's `data`.
pub async fn secret(client: &Client, namespace: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(|e| e.to_string())?;
    Ok(found.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()))
}
