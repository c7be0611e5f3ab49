//! Printers for apps/v1: deployments, replicasets, statefulsets, daemonsets and
//! controllerrevisions.

use jiff::Timestamp;
use serde_json::Value;

use super::{age, at, col, container_cells, format_labels, format_selector, int_at, list_at, name, opt_bool};
use super::{opt_int, selector_string, str_at, wide, Printer, AGE, CONTAINERS, IMAGES, NAME};

const RS_DESIRED: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
const RS_CURRENT: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
const RS_READY: &str = "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";
const RS_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const DS_DESIRED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const DS_CURRENT: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const DS_READY: &str = "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.";
const DS_UPDATED: &str = "The total number of nodes that are running updated daemon pod";
const DS_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
const DS_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";
const DS_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const DEPLOY_UPDATED: &str =
    "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";
const DEPLOY_AVAILABLE: &str =
    "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";
const DEPLOY_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";
const CR_REVISION: &str = "Revision indicates the revision of the state represented by Data.";

const TEMPLATE_CONTAINERS: &str = "/spec/template/spec/containers";

pub(super) const DEPLOYMENT: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        col("Up-to-date", "string", DEPLOY_UPDATED),
        col("Available", "string", DEPLOY_AVAILABLE),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", DEPLOY_SELECTOR),
    ],
    cells: deployment_cells,
};

pub(super) const REPLICA_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", RS_DESIRED),
        col("Current", "integer", RS_CURRENT),
        col("Ready", "integer", RS_READY),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", RS_SELECTOR),
    ],
    cells: |rs, now| {
        let [names, images] = container_cells(rs, TEMPLATE_CONTAINERS);
        vec![
            name(rs),
            Value::from(desired(rs)),
            Value::from(int_at(rs, "/status/replicas")),
            Value::from(int_at(rs, "/status/readyReplicas")),
            age(rs, now),
            names,
            images,
            Value::from(format_selector(at(rs, "/spec/selector"))),
        ]
    },
};

pub(super) const STATEFUL_SET: Printer = Printer {
    columns: &[NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES],
    cells: |sts, now| {
        let [names, images] = container_cells(sts, TEMPLATE_CONTAINERS);
        let ready = format!("{}/{}", int_at(sts, "/status/readyReplicas"), desired(sts));
        vec![name(sts), Value::from(ready), age(sts, now), names, images]
    },
};

pub(super) const DAEMON_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", DS_DESIRED),
        col("Current", "integer", DS_CURRENT),
        col("Ready", "integer", DS_READY),
        col("Up-to-date", "integer", DS_UPDATED),
        col("Available", "integer", DS_AVAILABLE),
        col("Node Selector", "string", DS_NODE_SELECTOR),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", DS_SELECTOR),
    ],
    cells: |ds, now| {
        let [names, images] = container_cells(ds, TEMPLATE_CONTAINERS);
        let status = |field: &str| Value::from(int_at(ds, &format!("/status/{field}")));
        vec![
            name(ds),
            status("desiredNumberScheduled"),
            status("currentNumberScheduled"),
            status("numberReady"),
            status("updatedNumberScheduled"),
            status("numberAvailable"),
            Value::from(format_labels(at(ds, "/spec/template/spec/nodeSelector"))),
            age(ds, now),
            names,
            images,
            Value::from(format_selector(at(ds, "/spec/selector"))),
        ]
    },
};

pub(super) const CONTROLLER_REVISION: Printer = Printer {
    columns: &[
        NAME,
        col("Controller", "string", "Controller of the object"),
        col("Revision", "string", CR_REVISION),
        AGE,
    ],
    cells: |cr, now| vec![name(cr), Value::from(controller_of(cr)), Value::from(int_at(cr, "/revision")), age(cr, now)],
};

/// spec.replicas, which defaulting sets to 1 when unset.
fn desired(obj: &Value) -> i64 {
    opt_int(obj, "/spec/replicas").unwrap_or(1)
}

fn deployment_cells(d: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(d, TEMPLATE_CONTAINERS);
    let selector = selector_string(at(d, "/spec/selector")).unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        name(d),
        Value::from(format!("{}/{}", int_at(d, "/status/readyReplicas"), desired(d))),
        Value::from(int_at(d, "/status/updatedReplicas")),
        Value::from(int_at(d, "/status/availableReplicas")),
        age(d, now),
        names,
        images,
        Value::from(selector),
    ]
}

/// The controlling owner as `kind.group/name` (lower-case group kind), `<none>` without one.
fn controller_of(obj: &Value) -> String {
    let owners = list_at(obj, "/metadata/ownerReferences");
    let Some(owner) = owners.iter().find(|o| opt_bool(o, "/controller") == Some(true)) else {
        return "<none>".to_string();
    };
    let group = str_at(owner, "/apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
    let (kind, name) = (str_at(owner, "/kind"), str_at(owner, "/name"));
    match (kind, group) {
        ("", "") => name.to_string(),
        (kind, "") => format!("{}/{name}", kind.to_lowercase()),
        (kind, group) => format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-02T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn deployment_ready_up_to_date_available() {
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let r = deployment_cells(&d, now());
        let want = [
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("24h"),
            json!("app,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web"),
        ];
        assert_eq!(r, want);
        let fresh = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}});
        assert_eq!(deployment_cells(&fresh, now())[1..4], [json!("0/1"), json!(0), json!(0)]);
        assert_eq!(deployment_cells(&fresh, now())[7], json!("<invalid>"));
        assert_eq!(deployment_cells(&json!({"spec": {"replicas": 0}}), now())[1], json!("0/0"));
    }

    #[test]
    fn statefulset_daemonset_and_revision() {
        let sts = json!({"spec": {"replicas": 2}, "status": {"readyReplicas": 1}});
        assert_eq!((STATEFUL_SET.cells)(&sts, now())[1], json!("1/2"));
        let ds = json!({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
            "status": {"desiredNumberScheduled": 2, "numberReady": 1}});
        let r = (DAEMON_SET.cells)(&ds, now());
        assert_eq!(r[1..7], [json!(2), json!(0), json!(1), json!(0), json!(0), json!("kubernetes.io/os=linux")]);
        assert_eq!(r[10], json!("<none>"));
        let cr = json!({"revision": 4, "metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "proxy", "controller": true}]}});
        assert_eq!((CONTROLLER_REVISION.cells)(&cr, now())[1..3], [json!("daemonset.apps/proxy"), json!(4)]);
    }
}
