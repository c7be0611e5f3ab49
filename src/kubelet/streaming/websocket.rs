//! WebSocket clients the runtime cannot serve, served by translation (as upstream's API server does):
//! exec and attach over `v5.channel.k8s.io` or `v4.channel.k8s.io` (kubectl 1.30+, the Python client)
//! become a SPDY remotecommand session with the runtime, each binary message's first byte naming the
//! stream (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5's 255 closes the stream in its second
//! byte); the port-forward tunnel (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+) carries the client's
//! own SPDY bytes in binary messages, which go to the runtime's port-forward upgrade unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::StreamOptions;
use crate::spdy;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How a WebSocket request is served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Translation {
    /// Exec or attach; `v5` when the client speaks it (it can then close stdin).
    RemoteCommand {
        v5: bool,
    },
    PortForwardTunnel,
}

impl Translation {
    fn protocol(self) -> &'static str {
        match self {
            Translation::RemoteCommand { v5: true } => V5,
            Translation::RemoteCommand { v5: false } => V4,
            Translation::PortForwardTunnel => TUNNEL,
        }
    }

    /// The protocol asked of the runtime.
    fn runtime_protocol(self) -> &'static str {
        match self {
            Translation::RemoteCommand { .. } => V4,
            Translation::PortForwardTunnel => "portforward.k8s.io",
        }
    }
}

/// The translation a WebSocket request of `port_forward` or exec/attach calls for; None for anything
/// else (not WebSocket, or a protocol the runtime speaks itself).
pub fn translation(headers: &http::HeaderMap, port_forward: bool) -> Option<Translation> {
    let is_websocket = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        return None;
    }
    let offered: Vec<&str> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let offers = |p: &str| offered.contains(&p);
    match port_forward {
        true => offers(TUNNEL).then_some(Translation::PortForwardTunnel),
        false if offers(V5) => Some(Translation::RemoteCommand { v5: true }),
        false => offers(V4).then_some(Translation::RemoteCommand { v5: false }),
    }
}

/// Opens the runtime's session at `url`, then accepts the client's WebSocket and joins the two.
pub async fn serve(
    parts: &http::request::Parts,
    client_side: hyper::upgrade::OnUpgrade,
    url: &http::Uri,
    translation: Translation,
    options: StreamOptions,
) -> Response {
    let Some(key) = parts.headers.get(http::header::SEC_WEBSOCKET_KEY) else {
        return (StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key\n").into_response();
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let prepared = async {
        let runtime = runtime_session(url, translation.runtime_protocol()).await?;
        match translation {
            Translation::PortForwardTunnel => Ok::<_, String>(Prepared::Tunnel(runtime)),
            Translation::RemoteCommand { v5 } => Ok(Prepared::Command(Session::open(runtime, &options).await?, v5)),
        }
    };
    let prepared = match prepared.await {
        Ok(prepared) => prepared,
        Err(error) => {
            let message = format!("cannot open a stream with the runtime: {error}\n");
            return (StatusCode::BAD_GATEWAY, message).into_response();
        }
    };
    tokio::spawn(async move {
        let client = match client_side.await {
            Ok(client) => WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await,
            Err(error) => return tracing::debug!(%error, "a WebSocket client went away during the upgrade"),
        };
        let result = match prepared {
            Prepared::Tunnel(runtime) => tunnel(client, runtime).await,
            Prepared::Command(session, v5) => session.run(client, v5).await,
        };
        if let Err(error) = result {
            tracing::debug!(%error, "a translated stream ended with an error");
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static(translation.protocol()));
    if let Ok(accept) = http::HeaderValue::from_str(&accept) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

type Runtime = TokioIo<hyper::upgrade::Upgraded>;
type Client = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A SPDY/3.1 upgrade at the runtime's streaming `url` with `protocol`.
async fn runtime_session(url: &http::Uri, protocol: &str) -> Result<Runtime, String> {
    let authority = url.authority().ok_or("the streaming URL has no address")?.as_str();
    let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
    let request = http::Request::post(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(http_body_util::Full::default())
        .map_err(|e| e.to_string())?;
    let mut response = crate::http_client::send(tcp, request).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = crate::http_client::body(response, 4096).await.unwrap_or_default();
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body).trim()));
    }
    let upgraded = hyper::upgrade::on(&mut response).await.map_err(|e| e.to_string())?;
    Ok(TokioIo::new(upgraded))
}

/// A normal close, after which the client reads what it got as complete.
fn closing() -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

/// The port-forward tunnel: binary messages one way, the runtime's bytes the other.
async fn tunnel(client: Client, runtime: Runtime) -> Result<(), String> {
    let (mut from_runtime, mut to_runtime) = tokio::io::split(runtime);
    let (mut to_client, mut from_client) = client.split();
    let downstream = async {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let read = from_runtime.read(&mut buffer).await.map_err(|e| e.to_string())?;
            if read == 0 {
                return to_client.send(closing()).await.map_err(|e| e.to_string());
            }
            let chunk = Bytes::copy_from_slice(&buffer[..read]);
            to_client.send(Message::Binary(chunk)).await.map_err(|e| e.to_string())?;
        }
    };
    let upstream = async {
        while let Some(message) = from_client.next().await {
            match message.map_err(|e| e.to_string())? {
                Message::Binary(data) => to_runtime.write_all(&data).await.map_err(|e| e.to_string())?,
                Message::Close(_) => break,
                _ => {}
            }
        }
        to_runtime.shutdown().await.map_err(|e| e.to_string())
    };
    tokio::select! {
        result = downstream => result,
        result = upstream => result,
    }
}

/// What is ready before the client is told the protocol is switched.
enum Prepared {
    Tunnel(Runtime),
    Command(Session, bool),
}

type RuntimeWriter = Arc<Mutex<spdy::Writer<tokio::io::WriteHalf<Runtime>>>>;

/// A remotecommand session with the runtime, its streams open.
struct Session {
    reader: tokio::io::ReadHalf<Runtime>,
    writer: RuntimeWriter,
    /// The streams the runtime writes to, and the channel of each.
    channels: HashMap<u32, u8>,
    stdin: Option<u32>,
    resize: Option<u32>,
}

impl Session {
    /// Opens the streams `options` call for in client-go's order (error, stdin, stdout, then stderr or,
    /// with a TTY, resize), each once the runtime has accepted the one before.
    async fn open(runtime: Runtime, options: &StreamOptions) -> Result<Session, String> {
        let (reader, writer) = tokio::io::split(runtime);
        let mut session = Session {
            reader,
            writer: Arc::new(Mutex::new(spdy::Writer::new(writer))),
            channels: HashMap::new(),
            stdin: None,
            resize: None,
        };
        for (wanted, kind, channel) in [
            (true, "error", ERROR),
            (options.stdin, "stdin", STDIN),
            (options.stdout, "stdout", STDOUT),
            (options.stderr && !options.tty, "stderr", STDERR),
            (options.tty, "resize", RESIZE),
        ] {
            if !wanted {
                continue;
            }
            let id = session.writer.lock().await.open(&[("streamtype", kind)]).await.map_err(|e| e.to_string())?;
            session.accepted(id).await?;
            match channel {
                STDIN => session.stdin = Some(id),
                RESIZE => session.resize = Some(id),
                _ => {
                    session.channels.insert(id, channel);
                }
            }
        }
        Ok(session)
    }

    /// Waits for the runtime's reply to stream `id`.
    async fn accepted(&mut self, id: u32) -> Result<(), String> {
        loop {
            match spdy::read_frame(&mut self.reader).await.map_err(|e| e.to_string())? {
                Some(spdy::Frame::Reply { stream, .. }) if stream == id => return Ok(()),
                Some(spdy::Frame::Ping(ping)) => {
                    self.writer.lock().await.pong(ping).await.map_err(|e| e.to_string())?
                }
                Some(spdy::Frame::Reset { .. } | spdy::Frame::GoAway) | None => {
                    return Err("the runtime refused the stream".into())
                }
                Some(_) => {}
            }
        }
    }

    /// Joins the session with the client until the command is over (the runtime has finished every stream
    /// it writes to) or the client goes.
    async fn run(self, client: Client, v5: bool) -> Result<(), String> {
        let Session { mut reader, writer, channels, stdin, resize } = self;
        let (mut to_client, mut from_client) = client.split();
        // Ends when the command is over (the runtime has finished every stream it writes to) or the
        // runtime goes; a runtime that cannot take a pong is going, too.
        let downstream = async {
            let mut unfinished: HashSet<u32> = channels.keys().copied().collect();
            while !unfinished.is_empty() {
                let Ok(Some(frame)) = spdy::read_frame(&mut reader).await else { break };
                let answered = match frame {
                    spdy::Frame::Data { stream, payload, fin } => {
                        if fin {
                            unfinished.remove(&stream);
                        }
                        match (channels.get(&stream), payload.is_empty()) {
                            (Some(channel), false) => {
                                let mut message = Vec::with_capacity(payload.len() + 1);
                                message.push(*channel);
                                message.extend_from_slice(&payload);
                                // No WINDOW_UPDATE: the runtime's SPDY (spdystream) does no flow control, and
                                // taking the writer here could wait on stdin blocked by this very stream.
                                to_client.send(Message::Binary(message.into())).await.map_err(|e| e.to_string())?;
                                Ok(())
                            }
                            _ => Ok(()),
                        }
                    }
                    spdy::Frame::Reply { stream, fin: true } | spdy::Frame::Reset { stream } => {
                        unfinished.remove(&stream);
                        Ok(())
                    }
                    spdy::Frame::Ping(id) => writer.lock().await.pong(id).await,
                    spdy::Frame::GoAway => break,
                    spdy::Frame::Reply { .. } | spdy::Frame::Ignored => Ok(()),
                };
                if answered.is_err() {
                    break;
                }
            }
            Ok(())
        };
        // Ends when the client goes (or the runtime stops taking its input).
        let upstream = async {
            while let Some(message) = from_client.next().await {
                let data = match message.map_err(|e| e.to_string())? {
                    Message::Binary(data) => data,
                    Message::Close(_) => return Err("the client closed the connection".to_string()),
                    _ => continue,
                };
                let Some((&channel, payload)) = data.split_first() else { continue };
                let mut writer = writer.lock().await;
                let sent = match (channel, stdin, resize) {
                    (STDIN, Some(id), _) => writer.data(id, payload, false).await,
                    (RESIZE, _, Some(id)) => writer.data(id, payload, false).await,
                    (CLOSE, Some(id), _) if v5 && payload == [STDIN] => writer.data(id, &[], true).await,
                    _ => Ok(()),
                };
                if sent.is_err() {
                    // The runtime is going: what it has still to say comes downstream.
                    return std::future::pending().await;
                }
            }
            Err("the client went away".to_string())
        };
        let ended = tokio::select! {
            ended = downstream => ended,
            ended = upstream => ended,
        };
        // The session with the runtime ends either way, so that the runtime ends what it started.
        let _ = writer.lock().await.shutdown().await;
        ended?;
        // A normal close: the client reads what it got as complete (any other ending loses the status).
        to_client.send(closing()).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(upgrade: &str, protocols: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::UPGRADE, upgrade.parse().unwrap());
        for protocol in protocols {
            headers.append(http::header::SEC_WEBSOCKET_PROTOCOL, protocol.parse().unwrap());
        }
        headers
    }

    #[test]
    fn websocket_clients_are_translated_only_for_what_the_runtime_lacks() {
        let exec = |h: &http::HeaderMap| translation(h, false);
        assert_eq!(exec(&headers("websocket", &[V5])), Some(Translation::RemoteCommand { v5: true }));
        assert_eq!(
            exec(&headers("websocket", &["v4.channel.k8s.io, channel.k8s.io"])),
            Some(Translation::RemoteCommand { v5: false })
        );
        assert_eq!(exec(&headers("websocket", &["channel.k8s.io"])), None, "old protocols go to the runtime");
        assert_eq!(exec(&headers("SPDY/3.1", &[])), None);
        assert_eq!(translation(&headers("websocket", &[TUNNEL]), true), Some(Translation::PortForwardTunnel));
        assert_eq!(translation(&headers("websocket", &[V5]), true), None);
    }
}
