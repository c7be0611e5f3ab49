//! Defaulting of built-in kinds as upstream's v1 defaulters do (pkg/apis/*/v1/defaults.go), on JSON.
//! Only fields the user left unset are touched; malformed shapes are left for validation to report.

use serde_json::{json, Value};

use crate::apiserver::object;
use crate::core::registry::ResourceInfo;

use super::defaults_pod;

/// Sets `path` to `value` when unset, creating missing parent objects; does nothing if a parent exists
/// but is not an object.
pub fn default_at(v: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map.entry(*p).or_insert_with(|| json!({}));
    }
    if let Some(map) = cur.as_object_mut() {
        if map.get(*last).is_none_or(Value::is_null) {
            map.insert((*last).to_string(), value);
        }
    }
}

/// Calls `f` on every object in the array at `path`.
pub fn each_in(v: &mut Value, path: &[&str], mut f: impl FnMut(&mut Value)) {
    let mut cur = v;
    for p in path {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(items) = cur.as_array_mut() {
        items.iter_mut().filter(|i| i.is_object()).for_each(&mut f);
    }
}

/// Defaults that only apply when an object is created (status reset and server-derived fields).
pub fn on_create(res: &ResourceInfo, obj: &mut Value) {
    let has_status = res.has_subresource(crate::core::registry::Subresource::Status);
    let keeps_status = matches!((res.group, res.kind), ("", "Node") | ("certificates.k8s.io", _));
    if has_status && !keeps_status {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    if (res.group, res.kind) == ("", "Pod") {
        defaults_pod::default_toleration_seconds(obj);
    }
    let status = match (res.group, res.kind) {
        ("", "Pod") => json!({"phase": "Pending", "qosClass": defaults_pod::qos_class(obj)}),
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "PersistentVolumeClaim" | "PersistentVolume") => json!({"phase": "Pending"}),
        ("batch", "Job") => return job_selector(obj),
        _ => return,
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

/// A Job without a manual selector selects its pods by its uid, as upstream generates.
fn job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = object::meta_str(obj, "uid").unwrap_or("").to_string();
    let name = object::name(obj).unwrap_or("").to_string();
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name,
    });
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    }
    default_at(obj, &["spec", "template", "metadata", "labels"], json!({}));
    if let (Some(target), Some(source)) =
        (obj.pointer_mut("/spec/template/metadata/labels").and_then(Value::as_object_mut), labels.as_object())
    {
        for (k, v) in source {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// Defaults on every write.
pub fn apply(res: &ResourceInfo, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (res.group, res.kind) {
        ("", "Pod") => {
            defaults_pod::pod_spec(obj, &["spec"]);
            defaults_pod::requests_from_limits(obj);
        }
        ("", "PodTemplate") => defaults_pod::pod_spec(obj, &["template", "spec"]),
        ("", "ReplicationController") => {
            default_at(obj, &["spec", "replicas"], json!(1));
            defaults_pod::pod_spec(obj, &["spec", "template", "spec"]);
        }
        ("", "Service") => service(obj),
        ("", "Namespace") => {
            let name = object::name(obj).unwrap_or("").to_string();
            default_at(obj, &["spec", "finalizers"], json!(["kubernetes"]));
            default_at(obj, &["metadata", "labels"], json!({}));
            if let Some(labels) = obj.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        ("", "Secret") => {
            default_at(obj, &["type"], json!("Opaque"));
            merge_string_data(obj);
        }
        ("", "PersistentVolumeClaim") => default_at(obj, &["spec", "volumeMode"], json!("Filesystem")),
        ("", "PersistentVolume") => {
            default_at(obj, &["spec", "persistentVolumeReclaimPolicy"], json!("Retain"));
            default_at(obj, &["spec", "volumeMode"], json!("Filesystem"));
        }
        ("", "Endpoints") => {
            each_in(obj, &["subsets"], |s| each_in(s, &["ports"], |p| default_at(p, &["protocol"], json!("TCP"))))
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            each_in(obj, &["ports"], |p| default_at(p, &["protocol"], json!("TCP")))
        }
        ("apps", "Deployment") => {
            default_at(obj, &["spec", "replicas"], json!(1));
            default_at(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                default_at(obj, &["spec", "strategy", "rollingUpdate", "maxUnavailable"], json!("25%"));
                default_at(obj, &["spec", "strategy", "rollingUpdate", "maxSurge"], json!("25%"));
            }
            default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
            default_at(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            defaults_pod::pod_spec(obj, &["spec", "template", "spec"]);
        }
        ("apps", "ReplicaSet") => {
            default_at(obj, &["spec", "replicas"], json!(1));
            defaults_pod::pod_spec(obj, &["spec", "template", "spec"]);
        }
        ("apps", "StatefulSet") => {
            default_at(obj, &["spec", "replicas"], json!(1));
            default_at(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
            default_at(obj, &["spec", "updateStrategy", "type"], json!("RollingUpdate"));
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                default_at(obj, &["spec", "updateStrategy", "rollingUpdate", "partition"], json!(0));
            }
            default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
            default_at(
                obj,
                &["spec", "persistentVolumeClaimRetentionPolicy"],
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            defaults_pod::pod_spec(obj, &["spec", "template", "spec"]);
        }
        ("apps", "DaemonSet") => {
            default_at(obj, &["spec", "updateStrategy", "type"], json!("RollingUpdate"));
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                default_at(obj, &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"], json!(1));
                default_at(obj, &["spec", "updateStrategy", "rollingUpdate", "maxSurge"], json!(0));
            }
            default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
            defaults_pod::pod_spec(obj, &["spec", "template", "spec"]);
        }
        ("batch", "Job") => job(obj, &["spec"]),
        ("batch", "CronJob") => {
            default_at(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
            default_at(obj, &["spec", "suspend"], json!(false));
            default_at(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
            default_at(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
            job(obj, &["spec", "jobTemplate", "spec"]);
        }
        ("scheduling.k8s.io", "PriorityClass") => default_at(obj, &["preemptionPolicy"], json!("PreemptLowerPriority")),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            default_at(obj, &["spec", "minReplicas"], json!(1));
            default_at(
                obj,
                &["spec", "metrics"],
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            );
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            let egress = obj.pointer("/spec/egress").is_some_and(|e| !e.is_null());
            let types = if egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
            default_at(obj, &["spec", "policyTypes"], types);
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => each_in(obj, &["subjects"], |s| {
            if matches!(s.get("kind").and_then(Value::as_str), Some("User" | "Group")) {
                default_at(s, &["apiGroup"], json!("rbac.authorization.k8s.io"));
            }
        }),
        _ => {}
    }
}

/// A Secret's `stringData` written into `data` (base64), where it wins over a key of the same name, and
/// never stored, as upstream's conversion does.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(entries)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else { return };
    default_at(obj, &["data"], json!({}));
    let Some(data) = obj.get_mut("data").and_then(Value::as_object_mut) else { return };
    for (key, value) in entries {
        if let Some(text) = value.as_str() {
            data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

fn job(obj: &mut Value, spec: &[&str]) {
    let at = |field: &'static str| [spec, &[field]].concat();
    // Both default to 1 only when both are unset: parallelism alone makes a work-queue Job.
    let path = |field: &str| format!("/{}/{field}", spec.join("/"));
    let neither = [path("parallelism"), path("completions")].iter().all(|p| obj.pointer(p).is_none_or(Value::is_null));
    if neither {
        default_at(obj, &at("completions"), json!(1));
    }
    default_at(obj, &at("parallelism"), json!(1));
    default_at(obj, &at("backoffLimit"), json!(6));
    default_at(obj, &at("completionMode"), json!("NonIndexed"));
    default_at(obj, &at("suspend"), json!(false));
    default_at(obj, &at("podReplacementPolicy"), json!("TerminatingOrFailed"));
    let template_spec = [spec, &["template", "spec"]].concat();
    defaults_pod::pod_spec(obj, &template_spec);
}

fn service(obj: &mut Value) {
    default_at(obj, &["spec", "type"], json!("ClusterIP"));
    default_at(obj, &["spec", "sessionAffinity"], json!("None"));
    let kind = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if kind != "ExternalName" {
        default_at(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
        default_at(obj, &["spec", "ipFamilies"], json!(["IPv4"]));
        default_at(obj, &["spec", "ipFamilyPolicy"], json!("SingleStack"));
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        default_at(obj, &["spec", "externalTrafficPolicy"], json!("Cluster"));
    }
    each_in(obj, &["spec", "ports"], |p| {
        default_at(p, &["protocol"], json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            default_at(p, &["targetPort"], port);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry;

    #[test]
    fn deployment_defaults_match_upstream() {
        let res = registry::find("apps", "v1", "deployments").expect("deployments");
        let mut d = json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        apply(res, &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn service_ports_default_protocol_and_target_port() {
        let res = registry::find("", "v1", "services").expect("services");
        let mut s = json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}});
        apply(res, &mut s);
        assert_eq!(s["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn a_secrets_string_data_goes_into_its_data() {
        let res = crate::core::registry::find("", "v1", "secrets").expect("secrets");
        let mut secret = json!({"data": {"a": "b2xk", "k": "eA=="}, "stringData": {"a": "new", "s": "text"}});
        apply(res, &mut secret);
        assert_eq!(secret, json!({"type": "Opaque", "data": {"a": "bmV3", "k": "eA==", "s": "dGV4dA=="}}));
    }

    #[test]
    fn malformed_shapes_do_not_panic() {
        for res in registry::RESOURCES {
            for mut v in [json!({"spec": "x", "metadata": 3}), json!({"spec": {"template": []}}), json!([])] {
                on_create(res, &mut v);
                apply(res, &mut v);
            }
        }
    }
}
