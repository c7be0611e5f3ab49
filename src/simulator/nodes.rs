//! The simulated nodes themselves: the Node each registers (capacity, labels, taints, a Ready
//! condition, as a kubelet registers), taking over its node after a restart, the Lease in
//! kube-node-lease each renews every heartbeat (how the control plane knows it is alive), and its
//! status posted again when the control plane marked it otherwise or five minutes have passed.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::runtime::reflector::Store;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use super::Fleet;

/// An unchanged status is posted again this often (the kubelet's nodeStatusReportFrequency).
const STATUS_REPORT_EVERY: Duration = Duration::from_secs(300);
/// Registrations and renewals in flight at once.
const CONCURRENCY: usize = 64;

/// The node as its kubelet would register it.
fn node_object(fleet: &Fleet, name: &str) -> Value {
    let mut labels: BTreeMap<String, String> = BTreeMap::from([
        ("kubernetes.io/hostname".into(), name.to_string()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
        ("node.tug.dev/simulated".into(), "true".into()),
    ]);
    labels.extend(fleet.labels.clone());
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": fleet.taints},
        "status": status(fleet, name),
    })
}

fn status(fleet: &Fleet, name: &str) -> Value {
    let now = jiff::Timestamp::now();
    let resources = json!({"cpu": fleet.cpu, "memory": fleet.memory, "pods": fleet.max_pods.to_string(), "ephemeral-storage": "100Gi"});
    let condition = |kind: &str, status: &str, reason: &str, message: &str| json!({"type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!({
        "capacity": resources, "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "simulated", "osImage": "tug simulated node",
            "containerRuntimeVersion": "simulated://1.0", "kubeletVersion": crate::KUBERNETES_VERSION_OF_TUG,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    })
}

/// Registers every node (taking over a node of the same name left by an earlier run).
pub async fn register_all(client: &Client, fleet: &Fleet) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(fleet.node_names())
        .map(|name| {
            let api = api.clone();
            async move {
                let node: Node = serde_json::from_value(node_object(fleet, &name)).map_err(kube::Error::SerdeError)?;
                match api.create(&PostParams::default(), &node).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(error)) if error.code == 409 => {
                        let patch = Patch::Merge(json!({"status": status(fleet, &name)}));
                        api.patch_status(&name, &PatchParams::default(), &patch).await.map(drop)
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Each `fleet.heartbeat`: renews every node's Lease (creating it when missing) and posts the status of
/// nodes whose Ready condition is not True or is stale. Runs forever.
pub async fn heartbeat(client: Client, fleet: &Fleet, known: Store<Node>) {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut tick = tokio::time::interval(fleet.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        futures::stream::iter(fleet.node_names())
            .for_each_concurrent(CONCURRENCY, |name| {
                let (api, nodes, known) = (api.clone(), nodes.clone(), known.clone());
                async move {
                    if let Err(error) = crate::kubelet::lease::renew(&api, &nodes, &name).await {
                        tracing::warn!(%error, node = name, "could not renew the node's lease");
                    }
                    let cached = known.get(&kube::runtime::reflector::ObjectRef::new(&name));
                    if cached.is_some_and(|node| needs_status(&node)) {
                        let patch = Patch::Merge(json!({"status": status(fleet, &name)}));
                        if let Err(error) = nodes.patch_status(&name, &PatchParams::default(), &patch).await {
                            tracing::warn!(%error, node = name, "could not post the node's status");
                        }
                    }
                }
            })
            .await;
    }
}

/// Whether the node's Ready condition is not True or was last posted over five minutes ago.
fn needs_status(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let Some(ready) = conditions.iter().find(|c| c.type_ == "Ready") else {
        return true;
    };
    let stale = ready.last_heartbeat_time.as_ref().is_none_or(|t| {
        jiff::Timestamp::now().duration_since(t.0)
            > jiff::SignedDuration::from_secs(STATUS_REPORT_EVERY.as_secs() as i64)
    });
    ready.status != "True" || stale
}
