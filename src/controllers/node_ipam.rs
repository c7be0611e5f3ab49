//! Node IPAM (upstream's range allocator): every node without a podCIDR gets the first free block of
//! the cluster CIDR (/24 for IPv4, /64 for IPv6, as upstream's default node-cidr-mask-size), written to
//! spec.podCIDR and spec.podCIDRs. A deleted node's block is free again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

struct Context {
    client: Client,
    cluster_cidr: IpNet,
    nodes: Store<Node>,
    /// Blocks handed out by this process that the node cache does not show yet, so concurrent syncs
    /// never hand out one twice.
    handed_out: Mutex<HashSet<IpNet>>,
}

/// Runs until the client's server goes away.
pub async fn run(client: Client, cluster_cidr: IpNet) {
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let nodes = controller.store();
    let context = Arc::new(Context { client, cluster_cidr, nodes, handed_out: Mutex::default() });
    controller.run(reconcile, super::retry_later, context).for_each(|_| futures::future::ready(())).await;
}

fn block_size(cluster: &IpNet) -> u8 {
    let wanted = if matches!(cluster, IpNet::V4(_)) { 24 } else { 64 };
    wanted.max(cluster.prefix_len())
}

async fn reconcile(node: Arc<Node>, context: Arc<Context>) -> Result<Action, kube::Error> {
    if let Some(held) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).filter(|c| !c.is_empty()) {
        // The node holds its block now: deleting the node frees it.
        if let Ok(block) = held.parse::<IpNet>() {
            context.handed_out.lock().unwrap_or_else(|e| e.into_inner()).remove(&block);
        }
        return Ok(Action::await_change());
    }
    let block = {
        let mut handed_out = context.handed_out.lock().unwrap_or_else(|e| e.into_inner());
        let assigned: HashSet<IpNet> =
            context.nodes.state().iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()).collect();
        handed_out.retain(|block| !assigned.contains(block));
        let in_use: HashSet<IpNet> = assigned.iter().chain(handed_out.iter()).copied().collect();
        let Some(block) = first_free(&context.cluster_cidr, &in_use) else {
            tracing::warn!(node = node.name_any(), cidr = %context.cluster_cidr, "no podCIDR left for the node");
            return Ok(Action::await_change());
        };
        handed_out.insert(block);
        block
    };
    let api: Api<Node> = Api::all(context.client.clone());
    let patch = json!({"spec": {"podCIDR": block.to_string(), "podCIDRs": [block.to_string()]}});
    let patched = api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
    if patched.is_err() {
        context.handed_out.lock().unwrap_or_else(|e| e.into_inner()).remove(&block);
    }
    patched.map(|_| Action::await_change())
}

fn first_free(cluster: &IpNet, in_use: &HashSet<IpNet>) -> Option<IpNet> {
    cluster.subnets(block_size(cluster)).ok()?.find(|block| !in_use.contains(block))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_in_order_skipping_used_ones() {
        let cluster: IpNet = "10.42.0.0/16".parse().unwrap();
        let used: HashSet<IpNet> = ["10.42.0.0/24".parse().unwrap(), "10.42.2.0/24".parse().unwrap()].into();
        assert_eq!(first_free(&cluster, &used), "10.42.1.0/24".parse().ok());
        let small: IpNet = "10.0.0.0/25".parse().unwrap();
        assert_eq!(first_free(&small, &HashSet::new()), Some(small), "a cluster smaller than a block is one block");
        let full: HashSet<IpNet> = [small].into();
        assert_eq!(first_free(&small, &full), None);
    }
}
