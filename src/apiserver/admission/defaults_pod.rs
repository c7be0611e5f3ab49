//! Pod spec defaulting (pods and every pod template), and the QoS class a new pod's status reports.

use serde_json::{json, Value};

use super::defaults::{default_at, each_in};

/// Defaults the pod spec found at `path` inside `obj`.
pub fn pod_spec(obj: &mut Value, path: &[&str]) {
    let mut spec = obj;
    for p in path {
        match spec.get_mut(*p) {
            Some(next) => spec = next,
            None => return,
        }
    }
    if !spec.is_object() {
        return;
    }
    default_at(spec, &["restartPolicy"], json!("Always"));
    default_at(spec, &["dnsPolicy"], json!("ClusterFirst"));
    default_at(spec, &["terminationGracePeriodSeconds"], json!(30));
    default_at(spec, &["schedulerName"], json!("default-scheduler"));
    default_at(spec, &["securityContext"], json!({}));
    default_at(spec, &["enableServiceLinks"], json!(true));
    for list in ["containers", "initContainers"] {
        each_in(spec, &[list], container);
    }
    each_in(spec, &["volumes"], |v| {
        if let Some(secret) = v.get_mut("secret") {
            default_at(secret, &["defaultMode"], json!(420));
        }
        if let Some(cm) = v.get_mut("configMap") {
            default_at(cm, &["defaultMode"], json!(420));
        }
    });
}

/// A pod's containers request what they limit unless they say otherwise (upstream defaults pods,
/// not templates, this way; the QoS class and the scheduler see the requests).
pub fn requests_from_limits(pod: &mut Value) {
    for list in ["containers", "initContainers"] {
        each_in(pod, &["spec", list], |c| {
            let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else { return };
            if let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut) {
                let requests = resources.entry("requests").or_insert_with(|| json!({}));
                if let Some(requests) = requests.as_object_mut() {
                    for (name, amount) in limits {
                        requests.entry(name).or_insert(amount);
                    }
                }
            }
        });
    }
}

fn container(c: &mut Value) {
    default_at(c, &["terminationMessagePath"], json!("/dev/termination-log"));
    default_at(c, &["terminationMessagePolicy"], json!("File"));
    default_at(c, &["resources"], json!({}));
    for amounts in ["requests", "limits"] {
        if let Some(map) = c.pointer_mut(&format!("/resources/{amounts}")).and_then(Value::as_object_mut) {
            // `cpu: 1` in YAML arrives as a number; a quantity is a string.
            map.values_mut().filter(|v| v.is_number()).for_each(|v| *v = json!(v.to_string()));
        }
    }
    let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    default_at(c, &["imagePullPolicy"], json!(pull_policy(&image)));
    each_in(c, &["ports"], |p| default_at(p, &["protocol"], json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            default_at(p, &["timeoutSeconds"], json!(1));
            default_at(p, &["periodSeconds"], json!(10));
            default_at(p, &["successThreshold"], json!(1));
            default_at(p, &["failureThreshold"], json!(3));
            if let Some(http) = p.get_mut("httpGet").filter(|h| h.is_object()) {
                default_at(http, &["scheme"], json!("HTTP"));
                default_at(http, &["path"], json!("/"));
            }
        }
    }
    each_in(c, &["env"], |e| {
        if let Some(field_ref) = e.pointer_mut("/valueFrom/fieldRef").filter(|f| f.is_object()) {
            default_at(field_ref, &["apiVersion"], json!("v1"));
        }
    });
}

/// How long a new pod stays on a node that is not ready or unreachable before it is evicted, unless it
/// says otherwise (upstream's DefaultTolerationSeconds admission plugin).
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Adds the not-ready and unreachable NoExecute tolerations a new pod lacks (DefaultTolerationSeconds).
pub fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert(Value::Null);
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let covered = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let tolerated = t.get("key").and_then(Value::as_str).unwrap_or("");
            (effect.is_empty() || effect == "NoExecute") && (tolerated.is_empty() || tolerated == key)
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digests count as tagged).
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Guaranteed, Burstable or BestEffort, from the containers' requests and limits (upstream's rules).
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let nonempty = |c: &Value, which: &str| {
        c.pointer(&format!("/resources/{which}"))
            .and_then(Value::as_object)
            .is_some_and(|m| m.iter().any(|(k, _)| k == "cpu" || k == "memory"))
    };
    if containers.iter().all(|c| !nonempty(c, "requests") && !nonempty(c, "limits")) {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = c.pointer(&format!("/resources/limits/{r}"));
            let request = c.pointer(&format!("/resources/requests/{r}"));
            limit.is_some() && (request.is_none() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pods_tolerate_not_ready_and_unreachable_nodes_for_five_minutes() {
        let mut pod = json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        default_toleration_seconds(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let mut tolerates_all = json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut tolerates_all);
        assert_eq!(tolerates_all["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }

    #[test]
    fn containers_request_what_they_limit_unless_they_say_otherwise() {
        let mut pod = json!({"spec": {"containers": [
            {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m"}}},
            {"resources": {}}]}});
        requests_from_limits(&mut pod);
        assert_eq!(pod["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "250m", "memory": "1Gi"}));
        assert_eq!(pod["spec"]["containers"][1]["resources"], json!({}));
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/app"), "Always");
        assert_eq!(pull_policy("app@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn qos_classes() {
        let best = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&best), "BestEffort");
        let guaranteed = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burst = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&burst), "Burstable");
    }
}
