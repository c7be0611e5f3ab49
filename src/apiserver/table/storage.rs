//! Printers for volumes: core/v1 persistentvolumes and persistentvolumeclaims, and storage.k8s.io/v1
//! storageclasses, csidrivers, csinodes and volumeattachments.

use jiff::Timestamp;
use serde_json::Value;

use super::{age, at, col, deleting, list_at, name, opt_bool, opt_str, scalar_text, str_at, wide, Column, Printer};
use super::{AGE, NAME};

const PV_CAPACITY: &str = "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity";
const PV_ACCESS: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";
const PV_RECLAIM: &str = "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming";
const PV_PHASE: &str = "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase";
const PV_CLAIM: &str = "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding";
const PV_REASON: &str = "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.";
const PV_MODE: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";
const PVC_PHASE: &str = "phase represents the current phase of PersistentVolumeClaim.";
const PVC_VOLUME: &str = "volumeName is the binding reference to the PersistentVolume backing this claim.";
const PVC_CAPACITY: &str = "capacity represents the actual resources of the underlying volume.";
const PVC_ACCESS: &str = "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1";
const PVC_MODE: &str = "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.";
const SC_PROVISIONER: &str = "provisioner indicates the type of the provisioner.";
const SC_RECLAIM: &str = "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.";
const SC_BINDING: &str = "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.";
const SC_EXPANSION: &str = "allowVolumeExpansion shows whether the storage class allow volume expand.";
const VA_ATTACHER: &str = "attacher indicates the name of the volume driver that MUST handle this request. This is the name returned by GetPluginName().";
const VA_PV: &str = "persistentVolumeName represents the name of the persistent volume to attach.";
const VA_NODE: &str = "nodeName represents the node that the volume should be attached to.";
const VA_ATTACHED: &str = "attached indicates the volume is successfully attached. This field must only be set by the entity completing the attach operation, i.e. the external-attacher.";
const CSI_ATTACH: &str = "attachRequired indicates this CSI volume driver requires an attach operation (because it implements the CSI ControllerPublishVolume() method), and that the Kubernetes attach detach controller should call the attach volume interface which checks the volumeattachment status and waits until the volume is attached before proceeding to mounting. The CSI external-attacher coordinates with CSI volume driver and updates the volumeattachment status when the attach operation is complete. If the CSIDriverRegistry feature gate is enabled and the value is specified to false, the attach operation will be skipped. Otherwise the attach operation will be called.\n\nThis field is immutable.";
const CSI_POD_INFO: &str = "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations, if set to true. If set to false, pod information will not be passed on mount. Default is false.\n\nThe CSI driver specifies podInfoOnMount as part of driver deployment. If true, Kubelet will pass pod information as VolumeContext in the CSI NodePublishVolume() calls. The CSI driver is responsible for parsing and validating the information passed in as VolumeContext.\n\nThe following VolumeContext will be passed if podInfoOnMount is set to true. This list might grow, but the prefix will be used. \"csi.storage.k8s.io/pod.name\": pod.Name \"csi.storage.k8s.io/pod.namespace\": pod.Namespace \"csi.storage.k8s.io/pod.uid\": string(pod.UID) \"csi.storage.k8s.io/ephemeral\": \"true\" if the volume is an ephemeral inline volume\n                                defined by a CSIVolumeSource, otherwise \"false\"\n\n\"csi.storage.k8s.io/ephemeral\" is a new feature in Kubernetes 1.16. It is only required for drivers which support both the \"Persistent\" and \"Ephemeral\" VolumeLifecycleMode. Other drivers can leave pod info disabled and/or ignore this field. As Kubernetes 1.15 doesn't support this field, drivers can only support one mode when deployed on such a cluster and the deployment determines which mode that is, for example via a command line parameter of the driver.\n\nThis field was immutable in Kubernetes < 1.29 and now is mutable.";
const CSI_CAPACITY: &str = "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report by creating CSIStorageCapacity objects with capacity information, if set to true.\n\nThe check can be enabled immediately when deploying a driver. In that case, provisioning new volumes with late binding will pause until the driver deployment has published some suitable CSIStorageCapacity object.\n\nAlternatively, the driver can be deployed with the field unset or false and it can be flipped later when storage capacity information has been published.\n\nThis field was immutable in Kubernetes <= 1.22 and now is mutable.";
const CSI_TOKENS: &str = "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication. Kubelet will pass the tokens in VolumeContext in the CSI NodePublishVolume calls. The CSI driver should parse and validate the following VolumeContext: \"csi.storage.k8s.io/serviceAccount.tokens\": {\n  \"<audience>\": {\n    \"token\": <token>,\n    \"expirationTimestamp\": <expiration timestamp in RFC3339>,\n  },\n  ...\n}\n\nNote: Audience in each TokenRequest should be different and at most one token is empty string. To receive a new token after expiry, RequiresRepublish can be used to trigger NodePublishVolume periodically.";
const CSI_REPUBLISH: &str = "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume. This field defaults to false.\n\nNote: After a successful initial NodePublishVolume call, subsequent calls to NodePublishVolume should only update the contents of the volume. New mount points will not be seen by a running container.";
const CSI_MODES: &str = "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports. The default if the list is empty is \"Persistent\", which is the usage defined by the CSI specification and implemented in Kubernetes via the usual PV/PVC mechanism.\n\nThe other mode is \"Ephemeral\". In this mode, volumes are defined inline inside the pod spec with CSIVolumeSource and their lifecycle is tied to the lifecycle of that pod. A driver has to be aware of this because it is only going to get a NodePublishVolume call for such a volume.\n\nFor more information about implementing this mode, see https://kubernetes-csi.github.io/docs/ephemeral-local-volumes.html A driver can support one or more of these modes and more modes may be added in the future.\n\nThis field is beta. This field is immutable.";

pub(super) const PERSISTENT_VOLUME: Printer = Printer {
    columns: &[
        NAME,
        col("Capacity", "string", PV_CAPACITY),
        col("Access Modes", "string", PV_ACCESS),
        col("Reclaim Policy", "string", PV_RECLAIM),
        col("Status", "string", PV_PHASE),
        col("Claim", "string", PV_CLAIM),
        col("StorageClass", "string", "StorageClass of the pv"),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
        col("Reason", "string", PV_REASON),
        AGE,
        wide("VolumeMode", "string", PV_MODE),
    ],
    cells: pv_cells,
};

pub(super) const PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", PVC_PHASE),
        col("Volume", "string", PVC_VOLUME),
        col("Capacity", "string", PVC_CAPACITY),
        col("Access Modes", "string", PVC_ACCESS),
        col("StorageClass", "string", "StorageClass of the pvc"),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
        AGE,
        wide("VolumeMode", "string", PVC_MODE),
    ],
    cells: pvc_cells,
};

pub(super) const STORAGE_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col("Provisioner", "string", SC_PROVISIONER),
        col("ReclaimPolicy", "string", SC_RECLAIM),
        col("VolumeBindingMode", "string", SC_BINDING),
        col("AllowVolumeExpansion", "string", SC_EXPANSION),
        AGE,
    ],
    cells: |sc, now| {
        let default =
            ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
                .iter()
                .any(|a| {
                    at(sc, "/metadata/annotations").and_then(|m| m.get(a)).and_then(Value::as_str) == Some("true")
                });
        let name = str_at(sc, "/metadata/name");
        vec![
            Value::from(if default { format!("{name} (default)") } else { name.to_string() }),
            Value::from(str_at(sc, "/provisioner")),
            Value::from(opt_str(sc, "/reclaimPolicy").unwrap_or("Delete")),
            Value::from(opt_str(sc, "/volumeBindingMode").unwrap_or("Immediate")),
            Value::from(opt_bool(sc, "/allowVolumeExpansion").unwrap_or(false)),
            age(sc, now),
        ]
    },
};

pub(super) const CSI_DRIVER: Printer = Printer {
    columns: &[
        NAME,
        col("AttachRequired", "boolean", CSI_ATTACH),
        col("PodInfoOnMount", "boolean", CSI_POD_INFO),
        col("StorageCapacity", "boolean", CSI_CAPACITY),
        col("TokenRequests", "string", CSI_TOKENS),
        col("RequiresRepublish", "boolean", CSI_REPUBLISH),
        col("Modes", "string", CSI_MODES),
        AGE,
    ],
    cells: |d, now| {
        let tokens = at(d, "/spec/tokenRequests").map_or("<unset>".to_string(), |t| {
            let audiences: Vec<&str> = t.as_array().into_iter().flatten().map(|r| str_at(r, "/audience")).collect();
            audiences.join(",")
        });
        let modes: Vec<&str> = list_at(d, "/spec/volumeLifecycleModes").iter().filter_map(Value::as_str).collect();
        vec![
            name(d),
            Value::from(opt_bool(d, "/spec/attachRequired").unwrap_or(true)),
            Value::from(opt_bool(d, "/spec/podInfoOnMount").unwrap_or(false)),
            Value::from(opt_bool(d, "/spec/storageCapacity").unwrap_or(false)),
            Value::from(tokens),
            Value::from(opt_bool(d, "/spec/requiresRepublish").unwrap_or(false)),
            Value::from(if modes.is_empty() { "<none>".to_string() } else { modes.join(",") }),
            age(d, now),
        ]
    },
};

pub(super) const CSI_NODE: Printer = Printer {
    columns: &[
        NAME,
        col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"),
        AGE,
    ],
    cells: |n, now| vec![name(n), Value::from(list_at(n, "/spec/drivers").len()), age(n, now)],
};

pub(super) const VOLUME_ATTACHMENT: Printer = Printer {
    columns: &[
        NAME,
        // Upstream marks this column with the "name" format too.
        Column { format: "name", ..col("Attacher", "string", VA_ATTACHER) },
        col("PV", "string", VA_PV),
        col("Node", "string", VA_NODE),
        col("Attached", "boolean", VA_ATTACHED),
        AGE,
    ],
    cells: |va, now| {
        vec![
            name(va),
            Value::from(str_at(va, "/spec/attacher")),
            Value::from(str_at(va, "/spec/source/persistentVolumeName")),
            Value::from(str_at(va, "/spec/nodeName")),
            Value::from(opt_bool(va, "/status/attached").unwrap_or(false)),
            age(va, now),
        ]
    },
};

fn pv_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(pv, "/spec/claimRef") {
        Some(c) => format!("{}/{}", str_at(c, "/namespace"), str_at(c, "/name")),
        None => String::new(),
    };
    let class = storage_class_annotation(pv).or(opt_str(pv, "/spec/storageClassName")).unwrap_or("");
    vec![
        name(pv),
        Value::from(storage_quantity(pv, "/spec/capacity")),
        Value::from(access_modes(pv, "/spec/accessModes")),
        Value::from(str_at(pv, "/spec/persistentVolumeReclaimPolicy")),
        Value::from(phase(pv)),
        Value::from(claim),
        Value::from(class),
        Value::from(opt_str(pv, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
        Value::from(str_at(pv, "/status/reason")),
        age(pv, now),
        Value::from(opt_str(pv, "/spec/volumeMode").unwrap_or("<unset>")),
    ]
}

fn pvc_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let volume = str_at(pvc, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (storage_quantity(pvc, "/status/capacity"), access_modes(pvc, "/status/accessModes"))
    };
    let class = storage_class_annotation(pvc).or(opt_str(pvc, "/spec/storageClassName")).unwrap_or("");
    vec![
        name(pvc),
        Value::from(phase(pvc)),
        Value::from(volume),
        Value::from(capacity),
        Value::from(modes),
        Value::from(class),
        Value::from(opt_str(pvc, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
        age(pvc, now),
        Value::from(opt_str(pvc, "/spec/volumeMode").unwrap_or("<unset>")),
    ]
}

/// status.phase, or Terminating once deletion has begun.
fn phase(obj: &Value) -> &str {
    if deleting(obj) {
        "Terminating"
    } else {
        str_at(obj, "/status/phase")
    }
}

/// The deprecated beta storage-class annotation, which takes precedence over the spec field.
fn storage_class_annotation(obj: &Value) -> Option<&str> {
    at(obj, "/metadata/annotations")?.get("volume.beta.kubernetes.io/storage-class")?.as_str()
}

/// The `storage` entry of a resource list; a zero quantity ("0") when unset.
fn storage_quantity(obj: &Value, ptr: &str) -> String {
    scalar_text(at(obj, ptr).and_then(|m| m.get("storage"))).unwrap_or_else(|| "0".to_string())
}

/// GetAccessModesAsString: the distinct modes abbreviated, in a fixed order.
fn access_modes(obj: &Value, ptr: &str) -> String {
    let modes: Vec<&str> = list_at(obj, ptr).iter().filter_map(Value::as_str).collect();
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| modes.contains(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn volumes_and_claims() {
        let pv = json!({"metadata": {"name": "pv1", "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "data"},
                     "storageClassName": "local-path", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        let want = ["pv1", "10Gi", "RWO,RWX", "Retain", "Bound", "ns/data", "old", "<unset>", ""];
        assert_eq!(pv_cells(&pv, now())[..9], want.map(Value::from));
        assert_eq!(pv_cells(&pv, now())[10], json!("Filesystem"));

        let pending = json!({"metadata": {"name": "c", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"storageClassName": "local-path", "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        let want = ["c", "Terminating", "", "", "", "local-path", "<unset>"];
        assert_eq!(pvc_cells(&pending, now())[..7], want.map(Value::from));
        let bound = json!({"spec": {"volumeName": "pv1"}, "status": {"phase": "Bound", "capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteOncePod"]}});
        assert_eq!(pvc_cells(&bound, now())[1..5], ["Bound", "pv1", "5Gi", "RWOP"].map(Value::from));
    }

    #[test]
    fn storage_class_and_driver_defaults() {
        let sc = json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        let r = (STORAGE_CLASS.cells)(&sc, now());
        assert_eq!(
            r[..5],
            [
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
        let r = (CSI_DRIVER.cells)(&json!({"spec": {"tokenRequests": [{"audience": "a"}, {"audience": "b"}]}}), now());
        assert_eq!(r[1..7], [json!(true), json!(false), json!(false), json!("a,b"), json!(false), json!("<none>")]);
    }
}
