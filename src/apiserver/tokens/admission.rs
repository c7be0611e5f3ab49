//! The ServiceAccount step of pod creation (upstream's ServiceAccount admission plugin): a pod runs as
//! `spec.serviceAccountName` (`default` when unset), which must exist, and unless the pod or its
//! ServiceAccount opts out with `automountServiceAccountToken: false`, gets the `kube-api-access-*`
//! projected volume (a token, the cluster CA, the namespace) mounted read-only at
//! /var/run/secrets/kubernetes.io/serviceaccount in every container that mounts nothing there.
//! Mirror pods are left alone: their spec is the static manifest's.

use serde_json::{json, Value};

use crate::apiserver::rest::Rest;
use crate::apiserver::status::{ApiError, ApiResult};

/// Where containers find their token, CA and namespace.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
/// What the kubelet asks for (upstream's warn-only bound token lifetime).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Applies the ServiceAccount rules to new pod `pod` named `name` in `ns`.
pub async fn admit_pod(rest: &Rest, ns: &str, name: &str, pod: &mut Value) -> ApiResult<()> {
    if pod.pointer(&format!("/metadata/annotations/{}", MIRROR_ANNOTATION.replace('/', "~1"))).is_some() {
        return Ok(());
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    let account = [spec.get("serviceAccountName"), spec.get("serviceAccount")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(account));
    spec.insert("serviceAccount".into(), json!(account));
    let Some(found) = rest.find_core("serviceaccounts", Some(ns), &account).await? else {
        return Err(ApiError::forbidden(format!(
            "pods {name:?} is forbidden: error looking up service account {ns}/{account}: serviceaccount {account:?} not found"
        )));
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| found.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    Ok(())
}

/// Mounts the token volume (an existing `kube-api-access-*` one, or a new one) into every init and
/// regular container without a mount at [`MOUNT_PATH`], adding the volume if any container needs it.
fn mount_token(spec: &mut serde_json::Map<String, Value>) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let volume_name =
        existing.clone().unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", crate::apiserver::rest::random_suffix()));
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(container) = container.as_object_mut() else { continue };
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if mounts.iter().any(|m| m["mountPath"] == MOUNT_PATH) {
                continue;
            }
            mounts.push(json!({"name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH}));
            mounted = true;
        }
    }
    if mounted && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(token_volume(&volume_name));
        }
    }
}

fn token_volume(name: &str) -> Value {
    json!({"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
    ]}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn every_container_mounts_one_new_volume() {
        let mut s = spec(json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}, {"name": "b"}]}));
        mount_token(&mut s);
        let volumes = s["volumes"].as_array().expect("volumes");
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().expect("name");
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        for c in s["initContainers"].as_array().into_iter().chain(s["containers"].as_array()).flatten() {
            assert_eq!(c["volumeMounts"], json!([{"name": name, "readOnly": true, "mountPath": MOUNT_PATH}]));
        }
        assert_eq!(volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3607);
    }

    #[test]
    fn a_container_with_its_own_mount_there_is_left_alone() {
        let own = json!([{"name": "mine", "mountPath": MOUNT_PATH}]);
        let mut s = spec(json!({"containers": [{"name": "a", "volumeMounts": own.clone()}]}));
        mount_token(&mut s);
        assert_eq!(s["containers"][0]["volumeMounts"], own);
        assert!(s.get("volumes").is_none());
    }

    #[test]
    fn an_existing_token_volume_is_reused() {
        let volume = json!({"name": "kube-api-access-abcde", "projected": {"sources": []}});
        let mut s = spec(json!({"volumes": [volume], "containers": [{"name": "a"}]}));
        mount_token(&mut s);
        assert_eq!(s["volumes"].as_array().expect("volumes").len(), 1);
        assert_eq!(s["containers"][0]["volumeMounts"][0]["name"], "kube-api-access-abcde");
    }
}
