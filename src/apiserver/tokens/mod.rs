//! Service account tokens (upstream's bound tokens): ES256 JWTs signed with the cluster's service
//! account key, naming the namespace, the ServiceAccount and the object the token is bound to (a Pod, a
//! Secret or a Node) by name and uid. This module issues and verifies the JWT itself; `request` serves
//! `serviceaccounts/token`, `authenticate` turns a bearer token into a user (checking the bound objects
//! still exist) and `admission` gives pods their `kube-api-access-*` volume.

pub mod admission;
pub mod authenticate;
pub mod request;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::PublicKeyData;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A name and uid a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim: what the token belongs and is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bindings {
    pub namespace: String,
    pub serviceaccount: Bound,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Bound>,
    /// For tokens whose expiry was extended: when a client still using them is warned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Bindings,
}

/// Signs and checks the cluster's service account tokens.
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    /// The `iss` of every token (upstream's `--service-account-issuer`).
    pub issuer: String,
    /// What the API server accepts as a token's audience (upstream's `--api-audiences`).
    pub api_audiences: Vec<String>,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority").field("key_id", &self.key_id).field("issuer", &self.issuer).finish()
    }
}

impl TokenAuthority {
    /// The authority of `key`, for the cluster whose DNS domain is `cluster_domain`: issuer
    /// `https://kubernetes.default.svc.<domain>`, accepted audiences that and `tug` (as k3s does).
    pub fn new(key: &rcgen::KeyPair, cluster_domain: &str) -> TokenAuthority {
        let issuer = format!("https://kubernetes.default.svc.{cluster_domain}");
        // The key id upstream uses: the unpadded base64url SHA-256 of the public key's DER.
        let key_id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(key.subject_public_key_info()));
        TokenAuthority {
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            decoding: DecodingKey::from_ec_der(key.public_key_raw()),
            key_id,
            api_audiences: vec![issuer.clone(), "tug".into()],
            issuer,
        }
    }

    /// The signed token of `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let header = Header { kid: Some(self.key_id.clone()), ..Header::new(Algorithm::ES256) };
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The claims of `token` if this authority signed it, it is current (a minute of clock skew
    /// allowed) and meant for one of `audiences`.
    pub fn verify(&self, token: &str, audiences: &[String]) -> Result<Claims, String> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map(|data| data.claims).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token has expired".to_string(),
            jsonwebtoken::errors::ErrorKind::InvalidAudience => "token audiences are not accepted".to_string(),
            _ => format!("invalid bearer token: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(authority: &TokenAuthority, now: i64) -> Claims {
        Claims {
            iss: authority.issuer.clone(),
            sub: "system:serviceaccount:default:builder".into(),
            aud: authority.api_audiences.clone(),
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "4f0e".into(),
            kubernetes: Bindings {
                namespace: "default".into(),
                serviceaccount: Bound { name: "builder".into(), uid: "u-1".into() },
                pod: Some(Bound { name: "web".into(), uid: "u-2".into() }),
                secret: None,
                node: None,
                warnafter: None,
            },
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let authority = TokenAuthority::new(&rcgen::KeyPair::generate().expect("key"), "cluster.local");
        let claims = claims(&authority, now());
        let token = authority.sign(&claims).expect("signed");
        assert_eq!(authority.verify(&token, &authority.api_audiences).expect("valid"), claims);
        let payload = token.split('.').nth(1).expect("payload");
        let json: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64"))
                .expect("json");
        assert_eq!(json["kubernetes.io"]["serviceaccount"]["name"], "builder");
        assert!(json["kubernetes.io"].get("secret").is_none());
    }

    #[test]
    fn expired_foreign_or_misaddressed_tokens_are_refused() {
        let authority = TokenAuthority::new(&rcgen::KeyPair::generate().expect("key"), "cluster.local");
        let mut old = claims(&authority, now() - 7200);
        old.exp = now() - 3600;
        let expired = authority.sign(&old).expect("signed");
        assert_eq!(authority.verify(&expired, &authority.api_audiences).unwrap_err(), "token has expired");
        let other = TokenAuthority::new(&rcgen::KeyPair::generate().expect("key"), "cluster.local");
        let foreign = other.sign(&claims(&other, now())).expect("signed");
        assert!(authority.verify(&foreign, &authority.api_audiences).is_err());
        let token = authority.sign(&claims(&authority, now())).expect("signed");
        assert!(authority.verify(&token, &["vault".to_string()]).is_err());
        // The payload of another account's token under this token's signature.
        let mut admin = claims(&authority, now());
        admin.sub = "system:serviceaccount:kube-system:admin".into();
        let admin_token = authority.sign(&admin).expect("signed");
        let mut tampered: Vec<&str> = token.split('.').collect();
        tampered[1] = admin_token.split('.').nth(1).expect("payload");
        assert!(authority.verify(&tampered.join("."), &authority.api_audiences).is_err());
        assert!(authority.verify("abc.def", &authority.api_audiences).is_err());
    }
}
