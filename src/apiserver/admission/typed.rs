//! Decoding built-in kinds through their k8s-openapi types, as upstream decodes into Go structs: a value
//! of the wrong type is a 400, unknown fields are dropped (and reported for `fieldValidation`, as the
//! decoder meets them), and what is stored is the typed re-encoding.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::core::registry::ResourceInfo;

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch, certificates::v1 as certificates,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};

/// What decoding found: the typed re-encoding and the unknown fields, as dotted paths
/// (`spec.containers[0].bogus`).
pub type Normalized = (Value, Vec<String>);

fn round_trip<T: DeserializeOwned + Serialize>(obj: Value) -> Result<Normalized, String> {
    let mut unknown = Vec::new();
    // Decoding the owned value moves its strings into the typed object instead of copying them.
    let typed: T = serde_ignored::deserialize(obj, |path| unknown.push(render(&path))).map_err(|e| e.to_string())?;
    Ok((serde_json::to_value(&typed).map_err(|e| e.to_string())?, unknown))
}

fn render(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render(parent)),
        Path::Map { parent, key } => match render(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => render(parent),
    }
}

/// Re-encodes `obj` through the typed model of `res`; unknown kinds pass through unchanged.
pub fn normalize(res: &ResourceInfo, obj: Value) -> Result<Normalized, String> {
    match (res.group, res.kind) {
        ("", "Namespace") => round_trip::<core::Namespace>(obj),
        ("", "Pod") => round_trip::<core::Pod>(obj),
        ("", "Service") => round_trip::<core::Service>(obj),
        ("", "Endpoints") => round_trip::<core::Endpoints>(obj),
        ("", "ConfigMap") => round_trip::<core::ConfigMap>(obj),
        ("", "Secret") => round_trip::<core::Secret>(obj),
        ("", "ServiceAccount") => round_trip::<core::ServiceAccount>(obj),
        ("", "Node") => round_trip::<core::Node>(obj),
        ("", "Event") => round_trip::<core::Event>(obj),
        ("", "PersistentVolume") => round_trip::<core::PersistentVolume>(obj),
        ("", "PersistentVolumeClaim") => round_trip::<core::PersistentVolumeClaim>(obj),
        ("", "LimitRange") => round_trip::<core::LimitRange>(obj),
        ("", "ResourceQuota") => round_trip::<core::ResourceQuota>(obj),
        ("", "PodTemplate") => round_trip::<core::PodTemplate>(obj),
        ("", "ReplicationController") => round_trip::<core::ReplicationController>(obj),
        ("apps", "Deployment") => round_trip::<apps::Deployment>(obj),
        ("apps", "ReplicaSet") => round_trip::<apps::ReplicaSet>(obj),
        ("apps", "StatefulSet") => round_trip::<apps::StatefulSet>(obj),
        ("apps", "DaemonSet") => round_trip::<apps::DaemonSet>(obj),
        ("apps", "ControllerRevision") => round_trip::<apps::ControllerRevision>(obj),
        ("batch", "Job") => round_trip::<batch::Job>(obj),
        ("batch", "CronJob") => round_trip::<batch::CronJob>(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => round_trip::<autoscaling::HorizontalPodAutoscaler>(obj),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::Lease>(obj),
        ("discovery.k8s.io", "EndpointSlice") => round_trip::<discovery::EndpointSlice>(obj),
        ("events.k8s.io", "Event") => round_trip::<events::Event>(obj),
        ("networking.k8s.io", "Ingress") => round_trip::<networking::Ingress>(obj),
        ("networking.k8s.io", "IngressClass") => round_trip::<networking::IngressClass>(obj),
        ("networking.k8s.io", "NetworkPolicy") => round_trip::<networking::NetworkPolicy>(obj),
        ("policy", "PodDisruptionBudget") => round_trip::<policy::PodDisruptionBudget>(obj),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::Role>(obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "ClusterRole") => round_trip::<rbac::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => round_trip::<rbac::ClusterRoleBinding>(obj),
        ("storage.k8s.io", "StorageClass") => round_trip::<storage::StorageClass>(obj),
        ("storage.k8s.io", "CSIDriver") => round_trip::<storage::CSIDriver>(obj),
        ("storage.k8s.io", "VolumeAttachment") => round_trip::<storage::VolumeAttachment>(obj),
        ("scheduling.k8s.io", "PriorityClass") => round_trip::<scheduling::PriorityClass>(obj),
        ("node.k8s.io", "RuntimeClass") => round_trip::<node::RuntimeClass>(obj),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            round_trip::<certificates::CertificateSigningRequest>(obj)
        }
        _ => Ok((obj, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry;
    use serde_json::json;

    #[test]
    fn typed_round_trip_drops_and_reports_unknown_fields() {
        let pods = registry::find("", "v1", "pods").expect("pods");
        let input = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "busybox", "imagee": "typo"}], "nodeName": null}});
        let (out, unknown) = normalize(pods, input).expect("normalize");
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox");
        assert_eq!(out["metadata"].get("bogus"), None);
        assert_eq!(unknown, ["metadata.bogus", "spec.containers[0].imagee"]);
    }

    #[test]
    fn wrong_types_are_errors() {
        let deploy = registry::find("apps", "v1", "deployments").expect("deployments");
        let input = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three"}});
        assert!(normalize(deploy, input).is_err());
    }
}
