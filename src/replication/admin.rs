//! The members endpoints on the API port, for cluster admins (the `system:masters` group, as the admin
//! kubeconfig): `GET /tug/v1/members` lists the group's servers as this server knows them, `DELETE
//! /tug/v1/members/{id}` takes one out through the leader — the way to remove a server that has no
//! Node to delete (`--disable-agent`). `tug member` is their client.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use http::StatusCode;
use serde_json::json;

use super::{Removal, Replication};
use crate::apiserver::auth::{bearer_token, certified_in, User};
use crate::apiserver::negotiate::json_response;
use crate::apiserver::status::ApiError;
use crate::store::StoreError;

/// The members, as JSON `{"members": [Member, ...]}`.
pub const MEMBERS_PATH: &str = "/tug/v1/members";
const ADMIN_GROUP: &str = "system:masters";

/// The members endpoints, to be merged in front of the API router.
pub fn admin_routes(replication: Arc<Replication>) -> axum::Router {
    axum::Router::new()
        .route(MEMBERS_PATH, get(list))
        .route(&format!("{MEMBERS_PATH}/{{id}}"), delete(remove))
        .route_layer(axum::middleware::from_fn(only_admins))
        .with_state(replication)
}

/// Refuses callers outside the admin group (401 without any credentials).
async fn only_admins(request: Request, next: axum::middleware::Next) -> Response {
    if certified_in(&request, ADMIN_GROUP) {
        return next.run(request).await;
    }
    let anonymous = request.extensions().get::<User>().is_none() && bearer_token(request.headers()).is_none();
    if anonymous {
        return ApiError::unauthorized().into_response();
    }
    ApiError::forbidden(format!("only the {ADMIN_GROUP} group may list or remove the cluster's servers"))
        .into_response()
}

async fn list(State(replication): State<Arc<Replication>>) -> Response {
    json_response(StatusCode::OK, &json!({"members": replication.members()}), &[])
}

async fn remove(State(replication): State<Arc<Replication>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse() else {
        return ApiError::bad_request(format!("{id:?} is not a member id (a number, as `tug member ls` shows)"))
            .into_response();
    };
    match replication.remove_server_via_leader(id).await {
        Ok(Removal::Removed) => {
            let message = format!("member {id} left the cluster");
            json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "message": message}),
                &[],
            )
        }
        Ok(Removal::NotMember) => ApiError::new(404, "NotFound", format!("no member has id {id}")).into_response(),
        Ok(Removal::OnlyVoter) => {
            let message = format!("member {id} is the only voter: the cluster cannot go on without it");
            ApiError::new(409, "Conflict", message).into_response()
        }
        Err(StoreError::Unavailable(reason)) => {
            ApiError::new(503, "ServiceUnavailable", format!("cannot remove member {id} now: {reason}")).into_response()
        }
        Err(StoreError::Indeterminate(reason)) => {
            let message = format!("removing member {id} may or may not have taken effect: {reason}");
            ApiError::timeout(message).into_response()
        }
        Err(other) => ApiError::from(other).into_response(),
    }
}
