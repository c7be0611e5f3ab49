//! Service account tokens for pods' projected volumes (the kubelet's token manager): requested through
//! TokenRequest, bound to the pod, and kept per pod, account, audience and lifetime, so that the
//! volume refresh every few seconds reuses them; a token is requested again once 80% of its lifetime
//! has passed or it is a day old, as upstream's kubelet does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

/// The longest a token is used before a new one is asked for.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    pod_uid: String,
    account: String,
    audience: Option<String>,
    expiration_seconds: i64,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    /// When a new one is asked for.
    refresh_at: SystemTime,
    expires_at: SystemTime,
}

/// The tokens issued to this node's pods; cheap to clone.
#[derive(Clone)]
pub struct ServiceAccountTokens {
    client: Client,
    cache: Arc<Mutex<HashMap<Key, Cached>>>,
}

impl ServiceAccountTokens {
    pub fn new(client: Client) -> ServiceAccountTokens {
        ServiceAccountTokens { client, cache: Arc::default() }
    }

    /// A current token of `pod`'s service account for `audience` (the API server's when None), bound to
    /// the pod and asked for with `expiration_seconds`.
    pub async fn token(&self, pod: &Pod, audience: Option<&str>, expiration_seconds: i64) -> Result<String, String> {
        let spec = pod.spec.as_ref().ok_or("the pod has no spec")?;
        let account = spec.service_account_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let key = Key {
            pod_uid: pod.uid().unwrap_or_default(),
            account,
            audience: audience.map(str::to_string),
            expiration_seconds,
        };
        let now = SystemTime::now();
        if let Some(cached) = self.lock().get(&key).filter(|c| now < c.refresh_at) {
            return Ok(cached.token.clone());
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name_any()),
                    uid: pod.uid(),
                }),
            },
            ..Default::default()
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let issued = accounts
            .create_token_request(&key.account, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let status = issued.status.ok_or("failed to fetch token: the answer has no token")?;
        let expires_at =
            SystemTime::UNIX_EPOCH + Duration::from_secs(status.expiration_timestamp.0.as_second().max(0) as u64);
        let lifetime = expires_at.duration_since(now).unwrap_or_default();
        let cached = Cached { token: status.token, refresh_at: now + (lifetime * 4 / 5).min(MAX_AGE), expires_at };
        let mut cache = self.lock();
        cache.retain(|_, c| c.expires_at > now);
        cache.insert(key, cached.clone());
        Ok(cached.token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Cached>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
