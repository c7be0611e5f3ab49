//! Tests of the OpenAPI documents: operations, component schemas, `$ref` closure, and what
//! `kubectl explain` walks (GVK of the path operation → schema carrying that GVK → fields).

use std::time::Instant;

use serde_json::{json, Value};

use super::*;

/// The schema a `$ref` points at within `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let name = reference.strip_prefix(schema::REF_PREFIX)?;
    doc["components"]["schemas"].get(name)
}

/// Every `$ref` string anywhere in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Follows a field path as kubectl explain does: through `$ref`, a single `allOf`, then `properties`.
fn field<'a>(doc: &'a Value, mut schema: &'a Value, path: &[&str]) -> Option<&'a Value> {
    for name in path {
        loop {
            if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
                schema = resolve(doc, r)?;
            } else if let Some(first) = schema.get("allOf").and_then(|a| a.get(0)) {
                schema = first;
            } else {
                break;
            }
        }
        schema = schema.get("properties")?.get(*name)?;
    }
    Some(schema)
}

/// The schema carrying `gvk` in its `x-kubernetes-group-version-kind` list, as kubectl finds it.
fn schema_by_gvk<'a>(doc: &'a Value, gvk: &Value) -> Vec<&'a Value> {
    doc["components"]["schemas"]
        .as_object()
        .map(|m| m.values().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["x-kubernetes-group-version-kind"].as_array().is_some_and(|l| l.contains(gvk)))
        .collect()
}

#[test]
fn patch_operations_advertise_field_validation() {
    let doc = v3_group_version("apis/apps/v1").expect("apps/v1");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    assert!(patch["parameters"].as_array().expect("params").iter().any(|p| p["name"] == "fieldValidation"));
    assert!(v3_group_version("apis/nope/v1").is_none());
    assert!(v3_index()["paths"]["api/v1"]["serverRelativeURL"].as_str().is_some());
}

#[test]
fn apps_v1_has_the_deployment_schema_with_its_gvk() {
    let doc = &v3_group_version("apis/apps/v1").expect("apps/v1");
    let d = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(d["x-kubernetes-group-version-kind"], json!([{"group": "apps", "version": "v1", "kind": "Deployment"}]));
    let path = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}";
    assert_eq!(
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
    assert!(std::ptr::eq(
        v3_group_version_json("apis/apps/v1").expect("built"),
        v3_group_version_json("apis/apps/v1").expect("cached")
    ));
}

#[test]
fn deployment_spec_strategy_is_reachable() {
    let doc = &v3_group_version("apis/apps/v1").expect("apps/v1");
    let d = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    let strategy = field(doc, d, &["spec", "strategy"]).expect("spec.strategy");
    assert!(field(doc, strategy, &["rollingUpdate", "maxSurge"]).is_some());
    assert!(field(doc, d, &["spec", "template", "spec", "containers"]).is_some());
    assert!(field(doc, d, &["metadata", "labels"]).is_some());
}

#[test]
fn every_document_is_closed_and_finds_each_kind_by_its_gvk() {
    for entry in cache() {
        let doc = &v3_group_version(&entry.path).expect("document");
        let mut found = Vec::new();
        refs(doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            assert!(resolve(doc, r).is_some(), "{}: dangling {r}", entry.path);
        }
        for res in registry::resources_of(entry.group, entry.version) {
            let gvk = json!({"group": res.group, "version": res.version, "kind": res.kind});
            let matches = schema_by_gvk(doc, &gvk);
            assert_eq!(matches.len(), 1, "{}: {gvk}", entry.path);
            assert!(matches[0]["properties"]["metadata"].is_object());
        }
    }
}

#[test]
fn patch_leaves_strategic_merge_to_kubectls_compiled_in_types() {
    let doc = v3_group_version("apis/apps/v1").expect("apps/v1");
    let path = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}";
    let content = &doc["paths"][path]["patch"]["requestBody"]["content"];
    assert!(content["application/merge-patch+json"]["schema"]["$ref"].is_string());
    assert!(content.get("application/strategic-merge-patch+json").is_none());
}

#[test]
fn core_v1_uses_core_names() {
    let doc = &v3_group_version("api/v1").expect("api/v1");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
        json!([{"group": "", "version": "v1", "kind": "Pod"}])
    );
    assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    assert!(schemas["io.k8s.api.core.v1.PodList"].is_object());
}

#[test]
fn builds_every_document_and_reports_the_time() {
    let start = Instant::now();
    let mut bytes = 0;
    for entry in cache() {
        let doc = build(entry.group, entry.version);
        bytes += serde_json::to_vec(&doc).map(|b| b.len()).unwrap_or(0);
    }
    let elapsed = start.elapsed();
    eprintln!("built {} documents ({} KiB of JSON) in {elapsed:?}", cache().len(), bytes / 1024);
    assert!(bytes > 0);
}
