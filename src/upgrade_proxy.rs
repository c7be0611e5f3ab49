//! Passing an upgraded connection on (the streams of exec, attach and port-forward): the request goes to
//! the next hop with its upgrade headers (SPDY/3.1 or WebSocket, whichever the client asked for); when
//! that hop switches protocols, so does the client's connection, and the bytes of the two are copied
//! both ways until either side closes. Any other answer goes back to the client as it is, which is what
//! lets kubectl fall back from WebSocket to SPDY when a hop does not speak the former.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

/// The request headers passed on: what the upgrade handshakes need, nothing that authenticates.
const PASSED: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "user-agent",
];

/// The client's side of an upgrade request, taken out of its extensions: None when the request does not
/// ask to switch protocols (or came over HTTP/2, which cannot).
pub fn take_upgrade(parts: &mut http::request::Parts) -> Option<hyper::upgrade::OnUpgrade> {
    parts.headers.contains_key(http::header::UPGRADE).then(|| parts.extensions.remove())?
}

/// The answer to a stream request that is no upgrade request (upstream's words).
pub fn upgrade_required() -> Response {
    (StatusCode::BAD_REQUEST, "Upgrade request required").into_response()
}

/// Sends the request of `parts` as `path_and_query` to `authority` over `stream` and joins the client's
/// connection (`client_side`) with the hop's if the hop upgrades; `unreachable` turns a failure to talk
/// to the hop into the client's response.
pub async fn forward<S>(
    parts: &http::request::Parts,
    client_side: hyper::upgrade::OnUpgrade,
    stream: S,
    authority: &str,
    path_and_query: &str,
    unreachable: impl FnOnce(String) -> Response,
) -> Response
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut outgoing = http::Request::builder().method(&parts.method).uri(path_and_query);
    outgoing = outgoing.header(http::header::HOST, authority);
    for name in PASSED {
        for value in parts.headers.get_all(HeaderName::from_static(name)) {
            outgoing = outgoing.header(*name, value);
        }
    }
    let outgoing = match outgoing.body(http_body_util::Full::default()) {
        Ok(outgoing) => outgoing,
        Err(error) => return unreachable(error.to_string()),
    };
    let mut answer = match crate::http_client::send(stream, outgoing).await {
        Ok(answer) => answer,
        Err(error) => return unreachable(error),
    };
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = answer.into_parts();
        return Response::from_parts(parts, Body::new(body));
    }
    let hop_side = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (client, hop) = match tokio::try_join!(client_side, hop_side) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "an upgraded connection did not come up");
                return;
            }
        };
        let (mut client, mut hop) = (hyper_util::rt::TokioIo::new(client), hyper_util::rt::TokioIo::new(hop));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut hop).await {
            tracing::debug!(%error, "an upgraded connection ended");
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    *response.headers_mut() = answer.headers().clone();
    response
}
