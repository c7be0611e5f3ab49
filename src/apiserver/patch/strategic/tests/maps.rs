//! Tests of map merging: null deletes, `$retainKeys`, `$patch` on maps, new
//! fields cleaned of directives, replace strategy and other kinds.

use serde_json::json;

use super::super::{strategic_merge, E};
use super::{apply, containers};

#[test]
fn null_deletes_label_and_maps_merge() {
    let out = apply(json!({"metadata": {"labels": {"tier": null, "env": "prod", "gone": null}}})).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "web", "env": "prod"}));
    assert_eq!(out["metadata"]["name"], "web");
}

#[test]
fn retain_keys_on_deployment_strategy() {
    let out = apply(json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    // Without the directive the map merges and rollingUpdate stays.
    let out = apply(json!({"spec": {"strategy": {"type": "Recreate"}}})).unwrap();
    assert_eq!(out["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
    // Patch keys must be listed.
    let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}});
    assert_eq!(apply(bad), Err(E::BadRetainKeys));
    assert_eq!(apply(json!({"spec": {"strategy": {"$retainKeys": "type"}}})), Err(E::BadRetainKeys));
}

#[test]
fn retain_keys_on_volume_source() {
    let patch = json!({"spec": {"template": {"spec": {"volumes": [
        {"name": "data", "$retainKeys": ["name", "configMap"], "configMap": {"name": "cm"}}
    ]}}}});
    let out = apply(patch).unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["volumes"], json!([{"name": "data", "configMap": {"name": "cm"}}]));
}

#[test]
fn replace_directive_on_map() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "resources": {"$patch": "replace", "limits": {"memory": "1Gi"}}}
    ]}}}});
    let out = apply(patch).unwrap();
    assert_eq!(containers(&out)[0]["resources"], json!({"limits": {"memory": "1Gi"}}));
    // $patch: delete on a map empties it.
    let out = apply(json!({"metadata": {"labels": {"$patch": "delete"}}})).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({}));
}

#[test]
fn new_fields_lose_directives() {
    let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "k"}], "affinity": {"$patch": "delete"}}},
        "minReadySeconds": 5, "paused": {"$retainKeys": []}}});
    let out = apply(patch).unwrap();
    let spec = &out["spec"];
    assert!(spec["template"]["spec"].get("affinity").is_none());
    assert_eq!(spec["template"]["spec"]["tolerations"], json!([{"key": "k"}]));
    assert_eq!(spec["paused"], json!({}));
    assert_eq!(spec["minReadySeconds"], 5);
}

#[test]
fn replace_strategy_and_other_kinds() {
    let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
    let out = strategic_merge(
        &pdb,
        &json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
        "policy",
        "v1",
        "PodDisruptionBudget",
    )
    .unwrap();
    assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
    let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let out =
        strategic_merge(&svc, &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}), "", "v1", "Service")
            .unwrap();
    assert_eq!(out["spec"]["ports"], json!([{"port": 80, "targetPort": 9090}, {"port": 443}]));
    let crd = json!({"spec": {"versions": []}});
    let patch = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"$ref": "#/x", "properties": {"$odd": {}}}}}]}});
    assert!(strategic_merge(&crd, &patch, "apiextensions.k8s.io", "v1", "CustomResourceDefinition").is_ok());
}
