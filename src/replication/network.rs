//! Server-to-server calls: Raft's RPCs (append, vote, whole snapshots) and tug's own (forwarded writes,
//! read index, join, removal, ping, membership, removed) as POSTs of postcard bodies to `/tug/raft/*`
//! on a peer's API port, over mutual TLS (the peer's serving certificate checked against the cluster
//! CA, this server presenting its peer certificate). Each client keeps one HTTP/1.1 connection to its
//! peer and reconnects when it breaks; a snapshot is streamed on a connection of its own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, SnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, Snapshot};

use super::snapshot_wire::MessageBody;
use super::types::{decode, encode, NodeId, TypeConfig, Vote};

pub const APPEND_PATH: &str = "/tug/raft/append";
pub const VOTE_PATH: &str = "/tug/raft/vote";
pub const SNAPSHOT_PATH: &str = "/tug/raft/snapshot";
pub const WRITE_PATH: &str = "/tug/raft/write";
pub const READ_INDEX_PATH: &str = "/tug/raft/read-index";
pub const JOIN_PATH: &str = "/tug/raft/join";
/// Removes a member, on the leader (forwarded from the member an admin asked).
pub const REMOVE_PATH: &str = "/tug/raft/remove";
/// Answers whether a member is up (before a removal).
pub const PING_PATH: &str = "/tug/raft/ping";
/// Tells a member the leader has removed it from the group.
pub const REMOVED_PATH: &str = "/tug/raft/removed";
/// Answers which servers the receiver's committed membership holds (a server restarting asks whether
/// it was removed while it was down).
pub const MEMBERSHIP_PATH: &str = "/tug/raft/membership";

/// Largest answer accepted from a peer.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made: the call was not sent.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection broke before an answer: the call may or may not have arrived.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// No answer in time: the call may or may not have taken effect.
    #[error("{addr} did not answer within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The peer answered with an error status.
    #[error("{addr} refused: {status} {message}")]
    Refused { addr: String, status: u16, message: String },
    #[error("cannot encode or decode a message: {0}")]
    Codec(#[from] postcard::Error),
}

/// A connection to one peer server.
pub struct PeerClient {
    addr: String,
    tls: Arc<rustls::ClientConfig>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl PeerClient {
    pub fn new(addr: String, tls: Arc<rustls::ClientConfig>) -> PeerClient {
        PeerClient { addr, tls, sender: None }
    }

    /// POSTs `request` (encoded) to `path` and decodes the answer, within `timeout`.
    pub async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let body = Bytes::from(encode(request)?);
        let answer = self.post(path, body, timeout).await?;
        Ok(decode(&answer)?)
    }

    /// POSTs `body` to `path` and returns the answer's body, within `timeout`.
    async fn post(&mut self, path: &str, body: Bytes, timeout: Duration) -> Result<Bytes, CallError> {
        let addr = self.addr.clone();
        match tokio::time::timeout(timeout, self.post_once(path, body)).await {
            Ok(result) => result,
            Err(_) => {
                // The connection's state is unknown (a half-sent request): start over next time.
                self.sender = None;
                Err(CallError::Timeout { addr, after: timeout })
            }
        }
    }

    async fn post_once(&mut self, path: &str, body: Bytes) -> Result<Bytes, CallError> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        let answer = self.send(&mut sender, path, Full::new(body), None).await?;
        self.sender = Some(sender);
        answer
    }

    /// POSTs the `length` bytes of `body` to `path` on a connection of its own (a snapshot), within
    /// `timeout`.
    pub async fn post_streamed(
        &self,
        path: &str,
        body: MessageBody,
        length: u64,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let post = async {
            let mut sender = self.connect().await?;
            self.send(&mut sender, path, body, Some(length)).await?
        };
        tokio::time::timeout(timeout, post)
            .await
            .unwrap_or_else(|_| Err(CallError::Timeout { addr: self.addr.clone(), after: timeout }))
    }

    /// Sends one POST on `sender`: Err when the exchange broke (the connection is not reusable), else
    /// the answer's body, or the refusal it carries.
    async fn send<B>(
        &self,
        sender: &mut SendRequest<B>,
        path: &str,
        body: B,
        length: Option<u64>,
    ) -> Result<Result<Bytes, CallError>, CallError>
    where
        B: hyper::body::Body + Send + 'static,
    {
        let unreachable = |reason: String| CallError::Unreachable { addr: self.addr.clone(), reason };
        sender.ready().await.map_err(|e| unreachable(e.to_string()))?;
        let mut request = http::Request::post(path)
            .header(http::header::HOST, &self.addr)
            .header(http::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(length) = length {
            request = request.header(http::header::CONTENT_LENGTH, length);
        }
        let request = request.body(body).map_err(|e| unreachable(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let answer = crate::http_client::body(response, MAX_ANSWER_BYTES).await.map_err(unreachable)?;
        if !status.is_success() {
            let message = String::from_utf8_lossy(&answer).chars().take(512).collect();
            return Ok(Err(CallError::Refused { addr: self.addr.clone(), status: status.as_u16(), message }));
        }
        Ok(Ok(answer))
    }

    /// A new connection to the peer, over TLS.
    async fn connect<B>(&self) -> Result<SendRequest<B>, CallError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let not_connected = |reason: String| CallError::Connect { addr: self.addr.clone(), reason };
        let tcp = tokio::net::TcpStream::connect(&self.addr).await.map_err(|e| not_connected(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = crate::http_client::tls(tcp, crate::core::net::host_of(&self.addr), self.tls.clone())
            .await
            .map_err(not_connected)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| not_connected(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "peer connection ended");
            }
        });
        Ok(sender)
    }
}

/// `path` addressed to node `target`: the receiver refuses a message meant for another node (a server
/// that re-joined at the address of a member it replaced must not take that member's messages).
pub(super) fn addressed(path: &str, target: NodeId) -> String {
    format!("{path}?target={target}")
}

/// Makes a client per peer for openraft.
#[derive(Clone)]
pub struct Peers {
    /// This server's node id.
    pub id: NodeId,
    pub tls: Arc<rustls::ClientConfig>,
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> RaftPeer {
        RaftPeer { id: self.id, target, client: PeerClient::new(node.addr.clone(), self.tls.clone()) }
    }
}

/// openraft's view of one peer.
pub struct RaftPeer {
    id: NodeId,
    target: NodeId,
    client: PeerClient,
}

type RpcResult<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl RaftPeer {
    async fn rpc<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let path = addressed(path, self.target);
        let answer: Result<Resp, E> =
            self.client.call(&path, request, option.hard_ttl()).await.map_err(|e| match e {
                CallError::Timeout { after, .. } => {
                    RPCError::Timeout(Timeout { action, id: self.id, target: self.target, timeout: after })
                }
                CallError::Connect { .. } | CallError::Unreachable { .. } => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        answer.map_err(|remote| RPCError::RemoteError(RemoteError::new(self.target, remote)))
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.rpc(RPCTypes::AppendEntries, APPEND_PATH, &rpc, &option).await
    }

    #[allow(deprecated)]
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        // Snapshots go whole through `full_snapshot`; openraft does not send chunks with generic data.
        Err(RPCError::Network(NetworkError::new(&std::io::Error::other("chunked snapshots are not used"))))
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc(RPCTypes::Vote, VOTE_PATH, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let send = async {
            let (body, length) = super::snapshot_wire::message(&vote, &snapshot.meta, &snapshot.snapshot.path)
                .await
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            // A snapshot may be large: its deadline grows with its size (at least 1 MiB/s).
            let ttl = option.hard_ttl().max(Duration::from_secs(10 + length / (1 << 20)));
            let path = addressed(SNAPSHOT_PATH, self.target);
            let answer = self.client.post_streamed(&path, body, length, ttl).await.map_err(|e| match e {
                CallError::Connect { .. } | CallError::Unreachable { .. } => {
                    StreamingError::Unreachable(Unreachable::new(&e))
                }
                other => StreamingError::Network(NetworkError::new(&other)),
            })?;
            let answer: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
                decode(&answer).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            answer.map_err(|fatal| StreamingError::RemoteError(RemoteError::new(self.target, fatal)))
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => result,
        }
    }
}
