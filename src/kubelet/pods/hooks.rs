//! Container lifecycle hooks: postStart right after a container starts (a failure kills the container,
//! as upstream's FailedPostStartHook), preStop before a container is stopped, within its pod's grace
//! period. Both run what the hook says: a command in the container, an HTTP GET, a TCP connection (the
//! probes' handlers) or a sleep.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use super::probes::{self, Handler};
use crate::kubelet::cri::Cri;

/// How long a postStart hook may take (upstream waits without bound; a hung hook must not hold the
/// pod's worker forever).
const POST_START_LIMIT: Duration = Duration::from_secs(120);

fn handler(hook: &LifecycleHandler) -> Handler<'_> {
    Handler {
        exec: hook.exec.as_ref(),
        http_get: hook.http_get.as_ref(),
        tcp_socket: hook.tcp_socket.as_ref(),
        grpc: None,
    }
}

async fn run(
    cri: &Cri,
    container: &Container,
    id: &str,
    pod_ip: &str,
    hook: &LifecycleHandler,
    limit: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    let mut cri = cri.clone();
    let ran = probes::run_handler(&mut cri, container, id, pod_ip, handler(hook), limit);
    tokio::time::timeout(limit, ran).await.map_err(|_| format!("the hook did not finish within {limit:?}"))?
}

/// Runs the container's postStart hook, if it has one.
pub async fn post_start(cri: &Cri, container: &Container, id: &str, pod_ip: &str) -> Result<(), String> {
    match container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        Some(hook) => run(cri, container, id, pod_ip, hook, POST_START_LIMIT).await,
        None => Ok(()),
    }
}

/// Runs the container's preStop hook, if it has one, for at most `grace`.
pub async fn pre_stop(cri: &Cri, container: &Container, id: &str, pod_ip: &str, grace: Duration) -> Result<(), String> {
    match container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        Some(hook) => run(cri, container, id, pod_ip, hook, grace).await,
        None => Ok(()),
    }
}
