//! The node's heartbeat: its Lease `kube-node-lease/<node>`, renewed every few seconds, owned by the
//! Node so it goes with it. The node lifecycle controller reads `renewTime` to tell a node is alive.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How long a Lease is good for without renewal (the kubelet's default).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// Renews node `name`'s Lease, creating it when missing.
pub async fn renew(api: &Api<Lease>, nodes: &Api<Node>, name: &str) -> Result<(), kube::Error> {
    // A MicroTime: always six fractional digits, as the kubelet writes it.
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let patch = Patch::Merge(json!({"spec": {"holderIdentity": name, "renewTime": now}}));
    match api.patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let node = nodes.get(name).await?;
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.metadata.uid}]},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now},
            }))
            .map_err(kube::Error::SerdeError)?;
            crate::controllers::ignore_conflict(api.create(&PostParams::default(), &lease).await)
        }
        Err(e) => Err(e),
    }
}
