//! Server-side printing for `kubectl get`: the meta.k8s.io/v1 Table column definitions of each
//! built-in kind and the cells of one object's row, following upstream's printers
//! (kubernetes `pkg/printers/internalversion/printers.go`). Like upstream's apiserver, the rows
//! are always generated in wide form (priority-1 columns included); kubectl hides those columns
//! unless `-o wide`.
//!
//! This file owns the public API, the dispatch from (group, kind) to a printer, the two fallback
//! printers (upstream's default table convertor and the CRD default columns), and the helpers every
//! printer shares: JSON accessors that never panic, `HumanDuration` and ages, label, selector,
//! container and load-balancer formatting.

mod apps;
mod autoscaling;
mod batch;
mod config;
mod core;
mod events;
mod networking;
mod other;
mod pod;
mod storage;

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

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

/// Upstream's `duration.HumanDuration` ("5s", "3m20s", "2d3h", ...), also used for AGE.
pub fn human_duration(d: std::time::Duration) -> String {
    human_secs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
    PRINTERS
        .iter()
        .find(|(g, k, plural, _)| *g == group && (is(k) || is(plural)))
        .map_or(DEFAULT, |entry| entry.3)
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
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

/// A priority-1 column, shown by kubectl only with `-o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        priority: 1,
        ..col(name, type_, description)
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DESC);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// Upstream's default table convertor (kinds without a printer, e.g. roles, limitranges).
const CREATED_AT: Printer = Printer {
    columns: &[NAME, col("Created At", "date", AGE_DESC)],
    cells: |obj, _| {
        let created =
            parse_time(opt_str(obj, "/metadata/creationTimestamp")).unwrap_or(GO_ZERO_TIME);
        vec![
            name(obj),
            Value::from(created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ]
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

// ---- JSON accessors: absent, null or mistyped fields read as the zero value ----

/// The value at a JSON pointer, unless absent or null.
fn at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr).filter(|x| !x.is_null())
}

fn opt_str<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    at(v, ptr).and_then(Value::as_str)
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    opt_str(v, ptr).unwrap_or("")
}

fn opt_int(v: &Value, ptr: &str) -> Option<i64> {
    at(v, ptr).and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)))
}

fn int_at(v: &Value, ptr: &str) -> i64 {
    opt_int(v, ptr).unwrap_or(0)
}

fn opt_bool(v: &Value, ptr: &str) -> Option<bool> {
    at(v, ptr).and_then(Value::as_bool)
}

fn list_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    at(v, ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn map_len(v: &Value, ptr: &str) -> usize {
    at(v, ptr).and_then(Value::as_object).map_or(0, |m| m.len())
}

/// The object's name cell.
fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, "/metadata/name"))
}

/// The object's AGE cell.
fn age(obj: &Value, now: Timestamp) -> Value {
    Value::from(since(opt_str(obj, "/metadata/creationTimestamp"), now))
}

/// Whether metadata.deletionTimestamp is set.
fn deleting(obj: &Value) -> bool {
    at(obj, "/metadata/deletionTimestamp").is_some()
}

// ---- time ----

/// Go's zero `time.Time`, which upstream prints as `<unknown>`.
const GO_ZERO_TIME: Timestamp = Timestamp::constant(-62_135_596_800, 0);

/// Parses an RFC 3339 (micro)time; None when absent, malformed or Go's zero time.
fn parse_time(s: Option<&str>) -> Option<Timestamp> {
    s?.parse::<Timestamp>().ok().filter(|t| *t != GO_ZERO_TIME)
}

/// Upstream's translateTimestampSince: the human age of a timestamp, `<unknown>` when unset.
fn since(ts: Option<&str>, now: Timestamp) -> String {
    match parse_time(ts) {
        Some(t) => human_signed(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// HumanDuration of a possibly negative duration (clock skew prints `0s` or `<invalid>`).
fn human_signed(d: SignedDuration) -> String {
    human_secs(d.as_secs())
}

/// HumanDuration of whole seconds, truncated toward zero as Go's `int(d.Seconds())`.
fn human_secs(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_unit(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_unit(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_unit(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with_unit(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

/// "3m" or "3m20s": the second unit only when non-zero.
fn with_unit(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

// ---- formatting shared by several kinds ----

/// upstream printBool / printBoolPtr.
fn bool_text(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// An IntOrString (or a quantity) as text; None when absent.
fn scalar_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// labels.FormatLabels: `k=v` pairs sorted by key, `<none>` when empty.
fn format_labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// metav1.LabelSelectorAsSelector(sel).String(): "" for an absent or empty selector, Err for an
/// unknown operator or a wrong number of values.
fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = at(sel, "/matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for expr in list_at(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let mut values: Vec<&str> = list_at(expr, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match (str_at(expr, "/operator"), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return Err(()),
        };
        if key.is_empty() {
            return Err(());
        }
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(","))
}

/// metav1.FormatLabelSelector: `<none>` when empty, `<error>` when invalid.
fn format_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// layoutContainerCells: the names and the images of the containers at `ptr`, comma-joined.
fn container_cells(obj: &Value, ptr: &str) -> [Value; 2] {
    let containers = list_at(obj, ptr);
    let join = |field: &str| {
        let parts: Vec<&str> = containers.iter().map(|c| str_at(c, field)).collect();
        Value::from(parts.join(","))
    };
    [join("/name"), join("/image")]
}

/// A load-balancer status (services and ingresses): the distinct IPs or hostnames, sorted.
fn load_balancer_text(obj: &Value, ptr: &str) -> String {
    let entries: BTreeSet<&str> = list_at(obj, ptr)
        .iter()
        .map(|i| match str_at(i, "/ip") {
            "" => str_at(i, "/hostname"),
            ip => ip,
        })
        .filter(|s| !s.is_empty())
        .collect();
    entries.into_iter().collect::<Vec<_>>().join(",")
}

/// listWithMoreString: at most `max` entries then "+ N more...", `<unset>` when empty.
fn list_with_more(items: &[String], max: usize) -> String {
    if items.len() > max {
        return format!("{} + {} more...", items[..max].join(","), items.len() - max);
    }
    if items.is_empty() {
        return "<unset>".to_string();
    }
    items.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn human_duration_boundaries() {
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (599, "9m59s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (8 * 3600, "8h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400, "8d"),
            (730 * 86400 - 1, "729d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (8 * 365 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_secs(*secs), *want, "{secs}s");
        }
        assert_eq!(human_duration(std::time::Duration::from_millis(1999)), "1s");
        assert_eq!(human_duration(std::time::Duration::from_secs(200)), "3m20s");
    }

    #[test]
    fn ages_and_unknown_timestamps() {
        let now = ts("2024-01-01T00:10:00Z");
        assert_eq!(since(Some("2024-01-01T00:00:00Z"), now), "10m");
        assert_eq!(since(Some("2024-01-01T00:09:59.5Z"), now), "0s");
        assert_eq!(since(Some("garbage"), now), "<unknown>");
        assert_eq!(since(Some("0001-01-01T00:00:00Z"), now), "<unknown>");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some("2024-01-01T00:20:00Z"), now), "<invalid>");
    }

    #[test]
    fn selectors_and_labels() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]},
                                 {"key": "d", "operator": "DoesNotExist"}]});
        assert_eq!(format_selector(Some(&sel)), "a=1,b=2,c in (x,y),!d");
        assert_eq!(format_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_selector(None), "<none>");
        assert_eq!(
            format_selector(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
            )),
            "<error>"
        );
        assert_eq!(
            format_labels(Some(&json!({"z": "1", "app": "web"}))),
            "app=web,z=1"
        );
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn dispatch_and_fallbacks() {
        assert_eq!(columns("", "Pod")[1].name, "Ready");
        assert_eq!(columns("", "pods")[1].name, "Ready");
        assert_eq!(columns("apps", "Deployment").len(), 8);
        let obj = json!({"metadata": {"name": "r", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        let now = ts("2024-01-01T01:00:00Z");
        let names: Vec<_> = columns("rbac.authorization.k8s.io", "Role")
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Name", "Created At"]);
        assert_eq!(
            cells("rbac.authorization.k8s.io", "Role", &obj, now),
            vec![json!("r"), json!("2024-01-01T00:00:00Z")]
        );
        assert_eq!(
            cells("", "limitranges", &json!({"metadata": {"name": "l"}}), now)[1],
            json!("0001-01-01T00:00:00Z")
        );
        let names: Vec<_> = columns("example.com", "Widget")
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Name", "Age"]);
        assert_eq!(
            cells("example.com", "Widget", &obj, now),
            vec![json!("r"), json!("60m")]
        );
        assert_eq!(
            cells("example.com", "Widget", &json!(null), now),
            vec![json!(""), Value::Null]
        );
    }

    #[test]
    fn every_printer_survives_garbage_and_matches_its_columns() {
        let garbage = [
            json!(null),
            json!({}),
            json!({"metadata": 5, "spec": "x", "status": [1]}),
            json!({"spec": {"containers": [{"name": 1}], "ports": [null], "rules": {}, "metrics": [{"type": "Resource"}]},
                   "status": {"containerStatuses": [{"state": {"terminated": {}}}], "conditions": "no", "hard": {"cpu": 1}},
                   "subsets": [{"addresses": [{"ip": "::1"}], "ports": [{"port": "x"}]}], "ports": [{}], "endpoints": [{}]}),
        ];
        let now = ts("2024-01-01T00:00:00Z");
        let kinds = PRINTERS
            .iter()
            .map(|(g, k, _, _)| (*g, *k))
            .chain([("example.com", "Widget")]);
        for (group, kind) in kinds {
            let cols = columns(group, kind);
            assert_eq!(
                cols.iter()
                    .filter(|c| c.name == "Name" && c.format == "name")
                    .count(),
                1,
                "{group}/{kind}"
            );
            for obj in &garbage {
                assert_eq!(
                    cells(group, kind, obj, now).len(),
                    cols.len(),
                    "{group}/{kind} {obj}"
                );
            }
        }
    }
}
