//! Bootstrap tokens, as kubeadm's and k3s's `token create`: `<id>.<secret>` (6 and 16 characters of
//! [a-z0-9]) kept as the Secret `bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` in
//! kube-system, with an optional expiration. Agents join with them (`K10<ca hash>::<id>.<secret>`) like
//! with the server token; servers cannot. An expired token is refused, and deleted by the server's
//! cleaner within seconds, as kube-controller-manager's token cleaner does.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta};
use subtle::ConstantTimeEq;

pub const NAMESPACE: &str = "kube-system";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
const NAME_PREFIX: &str = "bootstrap-token-";
/// The group the token's joins are recorded under.
pub const EXTRA_GROUPS: &str = "system:bootstrappers:tug:default-node-token";
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// How often expired tokens are looked for.
const CLEAN_EVERY: Duration = Duration::from_secs(10);

/// A bootstrap token's two halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl BootstrapToken {
    /// Parses `<id>.<secret>`; None when the text is not of that shape.
    pub fn parse(text: &str) -> Option<BootstrapToken> {
        let (id, secret) = text.split_once('.')?;
        let valid = |part: &str, len: usize| part.len() == len && part.bytes().all(|b| ALPHABET.contains(&b));
        (valid(id, 6) && valid(secret, 16)).then(|| BootstrapToken { id: id.into(), secret: secret.into() })
    }

    /// A new random token.
    pub fn generate() -> BootstrapToken {
        let mut text = String::new();
        while text.len() < 22 {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("the OS random source");
            let wanted = 22 - text.len();
            // 256 is not a multiple of 36: bytes from 252 up would skew the draw, so they are dropped.
            text.extend(
                bytes.iter().filter(|&&b| b < 252).map(|&b| ALPHABET[usize::from(b % 36)] as char).take(wanted),
            );
        }
        BootstrapToken { id: text[..6].into(), secret: text[6..].into() }
    }

    pub fn secret_name(&self) -> String {
        secret_name(&self.id)
    }

    /// The Secret that makes this token valid until `expiration` (never when None).
    pub fn to_secret(&self, expiration: Option<jiff::Timestamp>, description: &str) -> Secret {
        let mut data = BTreeMap::from([
            ("token-id".to_string(), self.id.clone()),
            ("token-secret".to_string(), self.secret.clone()),
            ("usage-bootstrap-authentication".to_string(), "true".to_string()),
            ("usage-bootstrap-signing".to_string(), "true".to_string()),
            ("auth-extra-groups".to_string(), EXTRA_GROUPS.to_string()),
        ]);
        if let Some(at) = expiration {
            data.insert("expiration".into(), at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        if !description.is_empty() {
            data.insert("description".into(), description.into());
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name()),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE.into()),
            string_data: Some(data),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

/// The name of the Secret of the token with id `id`.
pub fn secret_name(id: &str) -> String {
    format!("{NAME_PREFIX}{id}")
}

/// A value of a bootstrap token Secret's data.
pub fn field<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    std::str::from_utf8(&secret.data.as_ref()?.get(key)?.0).ok()
}

/// When a token expires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expiry {
    Never,
    At(jiff::Timestamp),
    /// Not a timestamp: the token counts as expired, and is left for an operator to delete.
    Unreadable,
}

/// When the Secret's token expires.
pub fn expiration(secret: &Secret) -> Expiry {
    match field(secret, "expiration").map(str::parse::<jiff::Timestamp>) {
        None => Expiry::Never,
        Some(Ok(at)) => Expiry::At(at),
        Some(Err(_)) => Expiry::Unreadable,
    }
}

/// Whether `token` is a valid, unexpired bootstrap token for authentication.
pub async fn is_valid(client: &kube::Client, token: &BootstrapToken) -> kube::Result<bool> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let Some(secret) = secrets.get_opt(&token.secret_name()).await? else { return Ok(false) };
    let same_secret =
        field(&secret, "token-secret").is_some_and(|s| bool::from(s.as_bytes().ct_eq(token.secret.as_bytes())));
    let live = match expiration(&secret) {
        Expiry::Never => true,
        Expiry::At(at) => at > jiff::Timestamp::now(),
        Expiry::Unreadable => false,
    };
    Ok(secret.type_.as_deref() == Some(SECRET_TYPE)
        && field(&secret, "token-id") == Some(token.id.as_str())
        && field(&secret, "usage-bootstrap-authentication") == Some("true")
        && same_secret
        && live)
}

/// Lists bootstrap token Secrets only (a field selector, as upstream serves for Secrets' `type`).
pub fn of_type() -> ListParams {
    ListParams::default().fields(&format!("type={SECRET_TYPE}"))
}

/// Deletes expired bootstrap token Secrets, every `CLEAN_EVERY`, until dropped.
pub async fn clean_expired(client: kube::Client) {
    let secrets: Api<Secret> = Api::namespaced(client, NAMESPACE);
    loop {
        let listed = secrets.list(&of_type()).await.map(|l| l.items).unwrap_or_default();
        for secret in listed {
            let expired = matches!(expiration(&secret), Expiry::At(at) if at <= jiff::Timestamp::now());
            let name = secret.metadata.name.clone().unwrap_or_default();
            if expired {
                match secrets.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => tracing::info!(secret = %name, "deleted an expired bootstrap token"),
                    Err(error) => tracing::warn!(%error, secret = %name, "cannot delete an expired bootstrap token"),
                }
            }
        }
        tokio::time::sleep(CLEAN_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_kubeadms_shape() {
        let token = BootstrapToken::generate();
        assert_eq!(BootstrapToken::parse(&token.to_string()), Some(token.clone()));
        assert_ne!(BootstrapToken::generate(), token);
        for bad in
            ["abcdef.0123456789abcde", "ABCDEF.0123456789abcdef", "abcdef0123456789abcdef", "abcde.0123456789abcdefg"]
        {
            assert_eq!(BootstrapToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_secret_holds_the_token_its_usages_and_expiration() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").expect("token");
        let at: jiff::Timestamp = "2030-01-02T03:04:05Z".parse().expect("time");
        let secret = token.to_secret(Some(at), "for the lab");
        assert_eq!(secret.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        let data = secret.string_data.expect("data");
        assert_eq!(data["expiration"], "2030-01-02T03:04:05Z");
        assert_eq!(data["token-secret"], "0123456789abcdef");
        assert_eq!(data["description"], "for the lab");
        assert_eq!(data["usage-bootstrap-authentication"], "true");
    }
}
