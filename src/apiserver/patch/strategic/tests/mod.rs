//! Unit tests of strategic merge patch, by area (`lists`, `maps`, `errors`),
//! and the Deployment fixture they patch.

mod errors;
mod lists;
mod maps;

use serde_json::{json, Value};

use super::{strategic_merge, Result};

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b", "c"]},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "args": ["--a", "--b"],
                     "env": [{"name": "X", "value": "1"}],
                     "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "100m"}}},
                    {"name": "sidecar", "image": "side:1"}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }}
        }
    })
}

fn apply(patch: Value) -> Result<Value> {
    strategic_merge(&deployment(), &patch, "apps", "v1", "Deployment")
}

fn containers(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]["containers"]
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect()
}
