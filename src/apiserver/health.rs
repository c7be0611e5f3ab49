//! /healthz, /livez and /readyz with upstream's plain-text answers and per-check detail (`?verbose`,
//! or a single check by path, e.g. /readyz/store); /readyz also fails while the store's Raft group has
//! no leader this server has heard from.

use std::sync::atomic::Ordering;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::query::Query;
use super::ApiState;

/// Answers a health endpoint (`check` is the path after the leading slash).
pub fn respond(state: &ApiState, check: &str, query: &Query) -> Response {
    let mut parts = check.split('/');
    let endpoint = parts.next().unwrap_or("healthz");
    let only = parts.next();
    let store_ok = state.rest.store.current_revision() >= 0;
    let mut checks = vec![("ping", true), ("store", store_ok)];
    if endpoint == "readyz" {
        checks.push(("bootstrap", state.ready.load(Ordering::Acquire)));
        // As upstream's etcd readiness: without a leader heard from, writes and current reads fail.
        let leader = state.rest.store.replication_status().is_none_or(|status| status.has_leader);
        checks.push(("raft-leader", leader));
    }
    if let Some(name) = only {
        return match checks.iter().find(|(n, _)| *n == name) {
            Some((_, true)) => (StatusCode::OK, "ok").into_response(),
            Some((_, false)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {name} check failed"))
                    .into_response()
            }
            None => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
        };
    }
    let healthy = checks.iter().all(|(_, ok)| *ok);
    let verbose = query.get("verbose").is_some() || !healthy;
    let body = if verbose {
        let mut lines: Vec<String> = checks
            .iter()
            .map(|(name, ok)| if *ok { format!("[+]{name} ok") } else { format!("[-]{name} failed: reason withheld") })
            .collect();
        lines.push(if healthy { format!("{endpoint} check passed") } else { format!("{endpoint} check failed") });
        lines.join("\n") + "\n"
    } else {
        "ok".to_string()
    };
    let code = if healthy { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR };
    (code, [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}
