//! Removing a server by deleting its Node, as k3s does: a server's own Node (registered by its
//! in-process agent) carries the server's Raft node id in an annotation and a finalizer, so deleting
//! the Node (`kubectl delete node`) waits until the leader has taken the server out of the group. The
//! leader refuses while the removal would cost the quorum (the voters left must have a quorum among the
//! members answering); the Node then stays Terminating, with a warning event saying why, until it is
//! safe. The only voter stays a member and its Node simply goes. A removed server must be stopped, and
//! its data dir wiped before it joins again.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::replication::{Refusal, Removal, Replication};

/// The Raft node id of the server a Node is.
const SERVER_ID_ANNOTATION: &str = "tug.dev/server-id";
/// Holds a server's Node until the server has left the group.
const FINALIZER: &str = "tug.dev/server-member";
/// Every server's Node has it (see `super::agent_config`).
const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
const PERIOD: Duration = Duration::from_secs(5);

/// Marks this server's Node `name` with its Raft node `id` and the finalizer, once it is registered.
pub async fn mark_own_node(client: Client, name: String, id: u64) {
    let nodes: Api<Node> = Api::all(client);
    loop {
        match nodes.get_opt(&name).await {
            Ok(Some(node)) if node.metadata.deletion_timestamp.is_none() => {
                let mut finalizers = node.metadata.finalizers.clone().unwrap_or_default();
                let annotated = node.annotations().get(SERVER_ID_ANNOTATION) == Some(&id.to_string());
                let held = finalizers.iter().any(|f| f == FINALIZER);
                if annotated && held {
                    return;
                }
                if !held {
                    finalizers.push(FINALIZER.into());
                }
                let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version,
                    "annotations": {SERVER_ID_ANNOTATION: id.to_string()}, "finalizers": finalizers}});
                match nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                    Ok(_) => return,
                    Err(error) => tracing::debug!(%error, node = name, "cannot mark this server's node yet"),
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, node = name, "cannot read this server's node yet"),
        }
        tokio::time::sleep(PERIOD).await;
    }
}

/// On whichever server leads the group: takes the servers whose Nodes are being deleted out of it,
/// then lets the deletion finish; for ever.
pub async fn remove_deleted_servers(client: Client, replication: Arc<Replication>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let recorder = Recorder::new(client, "tug-server-membership");
    loop {
        tokio::time::sleep(PERIOD).await;
        if !replication.is_leader() {
            continue;
        }
        let servers = match nodes.list(&ListParams::default().labels(CONTROL_PLANE_LABEL)).await {
            Ok(servers) => servers,
            Err(error) => {
                tracing::debug!(%error, "cannot list the servers' nodes");
                continue;
            }
        };
        for node in servers {
            let finalizers = node.metadata.finalizers.clone().unwrap_or_default();
            if node.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
                continue;
            }
            let name = node.metadata.name.clone().unwrap_or_default();
            let id = node.annotations().get(SERVER_ID_ANNOTATION).and_then(|id| id.parse().ok());
            let removed = match id {
                Some(id) => replication.remove_server(id).await,
                None => Ok(Removal::NotMember),
            };
            match removed {
                Ok(removal) => {
                    if removal == Removal::Removed {
                        tracing::info!(node = name, "the deleted node's server left the cluster");
                    }
                    let left: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
                    let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version,
                        "finalizers": left}});
                    if let Err(error) = nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                        tracing::debug!(%error, node = name, "cannot release the deleted server's node");
                    }
                }
                Err(Refusal::NotLeader) => {}
                Err(refusal) => {
                    let message = format!("the server cannot leave the cluster yet: {refusal}");
                    tracing::warn!(node = name, "{message}");
                    recorder.emit(node.object_ref(&()), EventType::Warning, "RemovingServerRefused", message);
                }
            }
        }
    }
}
