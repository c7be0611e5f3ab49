//! Authentication: the identity of a request from its verified TLS client certificate (CN = user, O =
//! groups), as upstream's x509 authenticator, or else from a service account bearer token
//! (`tokens::authenticate`). Requests with neither are anonymous and may only reach the health and
//! version endpoints.

use std::collections::BTreeMap;

use x509_parser::prelude::{FromDer, X509Certificate};

/// Who is asking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn is_in(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Whether `request` comes from a client certificate in `group` (requests on routes outside the API's
/// own carry only certificate identities).
pub fn certified_in(request: &http::Request<axum::body::Body>, group: &str) -> bool {
    request.extensions().get::<User>().is_some_and(|user| user.is_in(group))
}

/// The identity of a peer, from its (already verified) leaf certificate; None when there is none.
pub fn from_peer_certificates(certs: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Option<User> {
    let leaf = certs?.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let mut groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    groups.push("system:authenticated".into());
    Some(User { name, groups, ..User::default() })
}

/// Paths anonymous requests may reach (upstream's system:public-info-viewer).
pub fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// The bearer token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
