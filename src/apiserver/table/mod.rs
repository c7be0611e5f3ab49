//! Server-side printing for `kubectl get`: the meta.k8s.io/v1 Table column definitions of each
//! built-in kind and the cells of one object's row, following upstream's printers
//! (kubernetes `pkg/printers/internalversion/printers.go`). Like upstream's apiserver, the rows
//! are always generated in wide form (priority-1 columns included); kubectl hides those columns
//! unless `-o wide`.
//!
//! This file owns the public API, the dispatch from (group, kind) to a printer, the two fallback
//! printers (upstream's default table convertor and the CRD default columns) and the column
//! definitions every printer shares. The helpers printers share live beside it: `fields` (JSON
//! accessors that never panic, the name and age cells), `duration` (timestamps, `HumanDuration`)
//! and `format` (bool, label, selector, container and load-balancer text); they are imported
//! here so that each printer takes them from `super`.

mod apps;
mod autoscaling;
mod batch;
mod config;
mod core;
mod duration;
mod events;
mod fields;
mod format;
mod networking;
mod other;
mod pod;
mod storage;
#[cfg(test)]
mod tests;

use jiff::Timestamp;
use serde_json::Value;

// The shared helpers, which each printer takes from `super`.
use duration::{human_secs, human_signed, parse_time, since, GO_ZERO_TIME};
use fields::{age, at, deleting, int_at, list_at, map_len, name, opt_bool, opt_int, opt_str, str_at};
use format::{
    bool_text, container_cells, format_labels, format_selector, list_with_more, load_balancer_text, scalar_text,
    selector_string,
};

/// One column definition of a Table (meta.k8s.io/v1 TableColumnDefinition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string", "integer", "boolean" or "date".
    pub type_: &'static str,
    /// "name" for the column holding the object's name, "" otherwise.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: shown by kubectl only with `-o wide`.
    pub priority: i32,
}

/// Columns for a kind; group is "" for core. `kind` is the kind ("Pod") or the plural resource
/// ("pods"), matched case-insensitively; anything unknown gets the default Name/Age columns.
pub fn columns(group: &str, kind: &str) -> &'static [Column] {
    printer(group, kind).columns
}

/// Cells of one object's row, in the order of `columns`, as JSON values (strings, integers,
/// booleans), ages relative to `now`. Missing or malformed fields print as upstream prints zero
/// values; this never panics.
pub fn cells(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    (printer(group, kind).cells)(obj, now)
}

/// A kind's printer: its columns and the function computing one row's cells.
#[derive(Clone, Copy)]
struct Printer {
    columns: &'static [Column],
    cells: fn(&Value, Timestamp) -> Vec<Value>,
}

fn printer(group: &str, kind: &str) -> Printer {
    let group = if group == "core" { "" } else { group };
    let is = |name: &str| name.eq_ignore_ascii_case(kind);
    PRINTERS.iter().find(|(g, k, plural, _)| *g == group && (is(k) || is(plural))).map_or(DEFAULT, |entry| entry.3)
}

/// The kinds with a printer of their own: (group, kind, plural, printer).
#[rustfmt::skip]
const PRINTERS: &[(&str, &str, &str, Printer)] = &[
    ("", "Pod", "pods", pod::POD),
    ("", "PodTemplate", "podtemplates", config::POD_TEMPLATE),
    ("", "Namespace", "namespaces", self::core::NAMESPACE),
    ("", "Node", "nodes", self::core::NODE),
    ("", "Service", "services", self::core::SERVICE),
    ("", "Endpoints", "endpoints", self::core::ENDPOINTS),
    ("", "ConfigMap", "configmaps", config::CONFIG_MAP),
    ("", "Secret", "secrets", config::SECRET),
    ("", "ServiceAccount", "serviceaccounts", config::SERVICE_ACCOUNT),
    ("", "ReplicationController", "replicationcontrollers", config::REPLICATION_CONTROLLER),
    ("", "ResourceQuota", "resourcequotas", config::RESOURCE_QUOTA),
    ("", "Event", "events", events::CORE_EVENT),
    ("events.k8s.io", "Event", "events", events::EVENTS_V1_EVENT),
    ("", "PersistentVolume", "persistentvolumes", storage::PERSISTENT_VOLUME),
    ("", "PersistentVolumeClaim", "persistentvolumeclaims", storage::PERSISTENT_VOLUME_CLAIM),
    ("apps", "Deployment", "deployments", apps::DEPLOYMENT),
    ("apps", "ReplicaSet", "replicasets", apps::REPLICA_SET),
    ("apps", "StatefulSet", "statefulsets", apps::STATEFUL_SET),
    ("apps", "DaemonSet", "daemonsets", apps::DAEMON_SET),
    ("apps", "ControllerRevision", "controllerrevisions", apps::CONTROLLER_REVISION),
    ("batch", "Job", "jobs", batch::JOB),
    ("batch", "CronJob", "cronjobs", batch::CRON_JOB),
    ("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", autoscaling::HPA),
    ("discovery.k8s.io", "EndpointSlice", "endpointslices", networking::ENDPOINT_SLICE),
    ("networking.k8s.io", "Ingress", "ingresses", networking::INGRESS),
    ("networking.k8s.io", "IngressClass", "ingressclasses", networking::INGRESS_CLASS),
    ("networking.k8s.io", "NetworkPolicy", "networkpolicies", networking::NETWORK_POLICY),
    ("storage.k8s.io", "StorageClass", "storageclasses", storage::STORAGE_CLASS),
    ("storage.k8s.io", "CSIDriver", "csidrivers", storage::CSI_DRIVER),
    ("storage.k8s.io", "CSINode", "csinodes", storage::CSI_NODE),
    ("storage.k8s.io", "VolumeAttachment", "volumeattachments", storage::VOLUME_ATTACHMENT),
    ("coordination.k8s.io", "Lease", "leases", other::LEASE),
    ("policy", "PodDisruptionBudget", "poddisruptionbudgets", other::POD_DISRUPTION_BUDGET),
    ("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", other::ROLE_BINDING),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", other::CLUSTER_ROLE_BINDING),
    ("scheduling.k8s.io", "PriorityClass", "priorityclasses", other::PRIORITY_CLASS),
    ("node.k8s.io", "RuntimeClass", "runtimeclasses", other::RUNTIME_CLASS),
    ("certificates.k8s.io", "CertificateSigningRequest", "certificatesigningrequests", other::CSR),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", other::WEBHOOK_CONFIGURATION),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", other::WEBHOOK_CONFIGURATION),
    // Built-in kinds upstream prints with its default table convertor.
    ("", "LimitRange", "limitranges", CREATED_AT),
    ("rbac.authorization.k8s.io", "Role", "roles", CREATED_AT),
    ("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", CREATED_AT),
    ("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", CREATED_AT),
];

// ---- column definitions shared by every printer ----

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// A priority-0 column.
const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

/// A priority-1 column, shown by kubectl only with `-o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { priority: 1, ..col(name, type_, description) }
}

const NAME: Column = Column { name: "Name", type_: "string", format: "name", description: NAME_DESC, priority: 0 };
const AGE: Column = col("Age", "string", AGE_DESC);
const CONTAINERS: Column = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: Column = wide("Images", "string", "Images referenced by each container in the template.");

/// Upstream's default table convertor (kinds without a printer, e.g. roles, limitranges).
const CREATED_AT: Printer = Printer {
    columns: &[NAME, col("Created At", "date", AGE_DESC)],
    cells: |obj, _| {
        let created = parse_time(opt_str(obj, "/metadata/creationTimestamp")).unwrap_or(GO_ZERO_TIME);
        vec![name(obj), Value::from(created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())]
    },
};

/// The columns a CRD without additionalPrinterColumns serves, used for anything unknown.
const DEFAULT: Printer = Printer {
    columns: &[NAME, col("Age", "date", AGE_DESC)],
    cells: |obj, now| match parse_time(opt_str(obj, "/metadata/creationTimestamp")) {
        Some(t) => vec![name(obj), Value::from(human_signed(now.duration_since(t)))],
        None if at(obj, "/metadata/creationTimestamp").is_some() => {
            vec![name(obj), Value::from("<unknown>")]
        }
        None => vec![name(obj), Value::Null],
    },
};
