//! The replication endpoints on the API port, for servers presenting the peer certificate only: Raft's
//! RPCs handed to the local node, the leader-side of forwarded writes, read indexes, joins and
//! removals, this server's view of the membership, and the leader's word that this server was removed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::Snapshot;

use super::network::{
    APPEND_PATH, JOIN_PATH, MEMBERSHIP_PATH, PING_PATH, READ_INDEX_PATH, REMOVED_PATH, REMOVE_PATH, SNAPSHOT_PATH,
    VOTE_PATH, WRITE_PATH,
};
use super::snapshot_wire::ReceiveError;
use super::types::{decode, encode, SnapshotFile};
use super::Replication;
use crate::apiserver::auth::certified_in;
use crate::apiserver::status::ApiError;
use crate::pki::PEER_GROUP;

/// Largest message other than a snapshot.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Largest snapshot (a store file).
const MAX_SNAPSHOT_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// The replication endpoints, to be merged in front of the API router.
pub fn routes(replication: Arc<Replication>) -> axum::Router {
    let state = Arc::new(Endpoints { replication });
    // Raft's own messages name the node they are for (see `network::addressed`).
    let raft = axum::Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(PING_PATH, post(|| async { answer(&()) }))
        .route(REMOVED_PATH, post(removed))
        .route(MEMBERSHIP_PATH, post(|State(s): Shared| async move { answer(&s.replication.committed_membership()) }))
        .route(SNAPSHOT_PATH, post(install_snapshot))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), only_for_this_node));
    axum::Router::new()
        .route(WRITE_PATH, post(write))
        .route(READ_INDEX_PATH, post(read_index))
        .route(JOIN_PATH, post(join))
        .route(REMOVE_PATH, post(remove))
        .merge(raft)
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .route_layer(axum::middleware::from_fn(only_peers))
        .with_state(state)
}

struct Endpoints {
    replication: Arc<Replication>,
}

type Shared = State<Arc<Endpoints>>;

/// Refuses callers without the peer certificate.
async fn only_peers(request: Request, next: axum::middleware::Next) -> Response {
    if !certified_in(&request, PEER_GROUP) {
        return ApiError::new(403, "Forbidden", "only the cluster's servers may use the replication endpoints")
            .into_response();
    }
    next.run(request).await
}

/// The encoded answer.
fn answer<T: serde::Serialize>(value: &T) -> Response {
    match encode(value) {
        Ok(bytes) => ([(http::header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

fn undecodable(e: impl std::fmt::Display) -> Response {
    ApiError::bad_request(format!("the replication message does not decode: {e}")).into_response()
}

/// The node a Raft message is meant for.
#[derive(serde::Deserialize)]
struct Target {
    target: super::types::NodeId,
}

/// Refuses a Raft message meant for another node than this one (a server that re-joined at the address
/// of the member it replaced must not take that member's messages).
async fn only_for_this_node(
    State(s): Shared,
    Query(target): Query<Target>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if target.target != s.replication.id {
        let message = format!("this server is node {}, not node {}", s.replication.id, target.target);
        return ApiError::new(404, "NotFound", message).into_response();
    }
    next.run(request).await
}

async fn append(State(s): Shared, body: Bytes) -> Response {
    match decode(&body) {
        Ok(request) => answer(&s.replication.raft.append_entries(request).await),
        Err(e) => undecodable(e),
    }
}

/// The leader removed this server from the group: it answers, then exits (see `lifecycle`).
async fn removed(State(s): Shared) -> Response {
    let dir = s.replication.store_dir.clone();
    tokio::spawn(async move {
        // The answer goes out first.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        super::lifecycle::exit_removed(&dir);
    });
    answer(&())
}

async fn vote(State(s): Shared, body: Bytes) -> Response {
    match decode(&body) {
        Ok(request) => answer(&s.replication.raft.vote(request).await),
        Err(e) => undecodable(e),
    }
}

async fn write(State(s): Shared, body: Bytes) -> Response {
    match decode(&body) {
        Ok(command) => answer(&s.replication.write_as_leader(command).await),
        Err(e) => undecodable(e),
    }
}

async fn read_index(State(s): Shared) -> Response {
    answer(&s.replication.read_index_as_leader().await)
}

async fn join(State(s): Shared, body: Bytes) -> Response {
    match decode(&body) {
        Ok(request) => answer(&s.replication.add_server_via_leader(request).await),
        Err(e) => undecodable(e),
    }
}

async fn remove(State(s): Shared, body: Bytes) -> Response {
    match decode(&body) {
        Ok(id) => answer(&s.replication.remove_server(id).await),
        Err(e) => undecodable(e),
    }
}

/// Receives a snapshot to disk as it arrives, then installs it.
async fn install_snapshot(State(s): Shared, body: axum::body::Body) -> Response {
    let path = super::state_machine::receiving_path(&super::snapshots_dir(&s.replication.store_dir));
    let received = super::snapshot_wire::receive(body.into_data_stream(), &path, MAX_SNAPSHOT_BYTES).await;
    let (vote, meta) = match received {
        Ok(header) => header,
        Err(e @ ReceiveError::Message(_)) => return ApiError::bad_request(e.to_string()).into_response(),
        Err(e @ ReceiveError::Disk(_)) => return ApiError::internal(e).into_response(),
    };
    let snapshot = Snapshot { meta, snapshot: Box::new(SnapshotFile { path: path.clone() }) };
    let installed = s.replication.raft.install_full_snapshot(vote, snapshot).await;
    // Installed, the file was moved into place; ignored (an older snapshot) or failed, it goes.
    let _ = tokio::fs::remove_file(&path).await;
    answer(&installed)
}
