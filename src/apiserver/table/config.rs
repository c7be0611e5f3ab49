//! Printers for the remaining core/v1 kinds: configmaps, secrets, serviceaccounts, podtemplates,
//! replicationcontrollers and resourcequotas.

use jiff::Timestamp;
use serde_json::Value;

use super::{age, at, col, container_cells, format_labels, int_at, list_at, map_len, name, opt_int};
use super::{scalar_text, str_at, wide, Printer, AGE, CONTAINERS, IMAGES, NAME};

const RC_DESIRED: &str = "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";
const RC_CURRENT: &str = "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";
const RC_READY: &str = "The number of ready replicas for this replication controller.";
const RC_SELECTOR: &str = "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
const SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
const SA_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
const CM_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";

pub(super) const CONFIG_MAP: Printer = Printer {
    columns: &[NAME, col("Data", "string", CM_DATA), AGE],
    cells: |cm, now| vec![name(cm), Value::from(map_len(cm, "/data") + map_len(cm, "/binaryData")), age(cm, now)],
};

pub(super) const SECRET: Printer = Printer {
    columns: &[NAME, col("Type", "string", SECRET_TYPE), col("Data", "string", SECRET_DATA), AGE],
    cells: |s, now| vec![name(s), Value::from(str_at(s, "/type")), Value::from(map_len(s, "/data")), age(s, now)],
};

pub(super) const SERVICE_ACCOUNT: Printer = Printer {
    columns: &[NAME, col("Secrets", "string", SA_SECRETS), AGE],
    cells: |sa, now| vec![name(sa), Value::from(list_at(sa, "/secrets").len()), age(sa, now)],
};

pub(super) const POD_TEMPLATE: Printer = Printer {
    columns: &[
        NAME,
        col("Containers", "string", "Names of each container in the template."),
        col("Images", "string", "Images referenced by each container in the template."),
        col("Pod Labels", "string", "The labels for the pod template."),
    ],
    cells: |t, _| {
        let [names, images] = container_cells(t, "/template/spec/containers");
        vec![name(t), names, images, Value::from(format_labels(at(t, "/template/metadata/labels")))]
    },
};

pub(super) const REPLICATION_CONTROLLER: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", RC_DESIRED),
        col("Current", "integer", RC_CURRENT),
        col("Ready", "integer", RC_READY),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", RC_SELECTOR),
    ],
    cells: |rc, now| {
        let [names, images] = container_cells(rc, "/spec/template/spec/containers");
        vec![
            name(rc),
            Value::from(opt_int(rc, "/spec/replicas").unwrap_or(1)),
            Value::from(int_at(rc, "/status/replicas")),
            Value::from(int_at(rc, "/status/readyReplicas")),
            age(rc, now),
            names,
            images,
            Value::from(format_labels(at(rc, "/spec/selector"))),
        ]
    },
};

pub(super) const RESOURCE_QUOTA: Printer = Printer {
    columns: &[
        NAME,
        col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
        col(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
        AGE,
    ],
    cells: quota_cells,
};

fn quota_cells(quota: &Value, now: Timestamp) -> Vec<Value> {
    let hard = at(quota, "/status/hard").and_then(Value::as_object);
    let mut resources: Vec<&String> = hard.into_iter().flat_map(|m| m.keys()).collect();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let used = scalar_text(at(quota, "/status/used").and_then(|u| u.get(resource.as_str())));
        let hard = scalar_text(hard.and_then(|m| m.get(resource.as_str())));
        let entry = format!("{resource}: {}/{}", used.as_deref().unwrap_or("0"), hard.as_deref().unwrap_or("0"));
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![name(quota), Value::from(requests.join(", ")), Value::from(limits.join(", ")), age(quota, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quota_requests_and_limits() {
        let now = "2024-01-01T00:00:00Z".parse().unwrap();
        let quota =
            json!({"status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"}, "used": {"pods": "3"}}});
        let r = quota_cells(&quota, now);
        assert_eq!(r[1..3], [json!("pods: 3/10, requests.cpu: 0/1"), json!("limits.cpu: 0/2")]);
    }

    #[test]
    fn replication_controller_and_template() {
        let rc = json!({"spec": {"selector": {"app": "web"}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}, "status": {"replicas": 1}});
        let r = (REPLICATION_CONTROLLER.cells)(&rc, "2024-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(r[1..4], [json!(1), json!(1), json!(0)]);
        assert_eq!(r[5..], [json!("app"), json!("nginx"), json!("app=web")]);
        let r =
            (POD_TEMPLATE.cells)(&json!({"template": rc["spec"]["template"]}), "2024-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(r[1..], [json!("app"), json!("nginx"), json!("app=web")]);
    }
}
