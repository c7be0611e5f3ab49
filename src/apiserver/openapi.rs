//! OpenAPI documents: /openapi/v3 (the index of group-version documents) and one document per group
//! version with every resource's paths and operations, carrying `x-kubernetes-group-version-kind` and
//! the query parameters kubectl checks for (fieldValidation, dryRun, fieldManager) — that is how kubectl
//! learns that the server validates fields itself. /openapi/v2 answers an empty document.

use serde_json::{json, Map, Value};

use crate::core::registry::{self, ResourceInfo};

/// `/openapi/v3`.
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry::groups() {
        for version in versions {
            let path = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            let url = format!(
                "/openapi/v3/{path}?hash={}",
                env!("CARGO_PKG_VERSION").replace('.', "")
            );
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

fn param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(res: &ResourceInfo, action: &str, params: &[Value]) -> Value {
    json!({
        "operationId": format!("{action}{}", res.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": res.group, "version": res.version, "kind": res.kind},
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
    })
}

/// The document of `api/v1` or `apis/<group>/<version>`; None if no such group version.
pub fn v3_group_version(path: &str) -> Option<Value> {
    let (group, version) = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let mut resources = registry::resources_of(group, version).peekable();
    resources.peek()?;
    let write_params = [
        param("dryRun", "When present, indicates that modifications should not be persisted."),
        param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields."),
    ];
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    for res in resources {
        let collection = if res.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", res.plural)
        } else {
            format!("{base}/{}", res.plural)
        };
        paths.insert(
            collection.clone(),
            json!({"get": operation(res, "list", &[]), "post": operation(res, "post", &write_params), "delete": operation(res, "deletecollection", &[])}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(res, "get", &[]),
                "put": operation(res, "put", &write_params),
                "patch": operation(res, "patch", &write_params),
                "delete": operation(res, "delete", &[]),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", super::discovery::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_advertise_field_validation() {
        let doc = v3_group_version("apis/apps/v1").expect("apps/v1");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(v3_group_version("apis/nope/v1").is_none());
        assert!(v3_index()["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .is_some());
    }
}
