//! The in-process API client of the control loops: a kube-rs `Client` over the API server's router
//! itself (no TCP, no TLS, no serialization beyond the API's own), authenticated as the identity it is
//! given. The loops go through the full API path like any other client: only the API server touches
//! the store.

use tower::ServiceExt;

use crate::apiserver::auth::User;

/// The identity of the built-in control loops (upstream's kube-controller-manager user).
pub fn controller_manager() -> User {
    User {
        name: "system:kube-controller-manager".into(),
        groups: vec!["system:authenticated".into()],
        ..User::default()
    }
}

/// The identity of the built-in scheduler (upstream's kube-scheduler user).
pub fn scheduler() -> User {
    User { name: "system:kube-scheduler".into(), groups: vec!["system:authenticated".into()], ..User::default() }
}

/// The identity of the server's own housekeeping outside the control loops (node joins).
pub fn supervisor() -> User {
    User {
        name: "system:tug-supervisor".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        ..User::default()
    }
}

/// A client whose requests `app` serves directly, as `user`.
pub fn in_process(app: axum::Router, user: User) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(user.clone());
        app.clone().oneshot(request)
    });
    kube::Client::new(service, "default")
}
