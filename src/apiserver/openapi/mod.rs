//! OpenAPI documents: /openapi/v3 (the index of group-version documents) and one document per group
//! version with every resource's paths and operations, carrying `x-kubernetes-group-version-kind` and
//! the query parameters kubectl checks for (fieldValidation, dryRun, fieldManager) — that is how kubectl
//! learns that the server validates fields itself — and `components.schemas` generated from the typed
//! model (see [`schema`]), which `kubectl explain` reads. A document is built the first time it is asked
//! for and cached for the life of the process. /openapi/v2 answers an empty document.

pub mod schema;

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::core::registry::{self, ResourceInfo};
use schema::{reference, Components};

/// The index key of a group version: `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`.
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for entry in cache() {
        let url = format!("/openapi/v3/{}?hash={}", entry.path, env!("CARGO_PKG_VERSION").replace('.', ""));
        paths.insert(entry.path.clone(), json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// One group version's document, built and serialized on first use.
struct Cached {
    path: String,
    group: &'static str,
    version: &'static str,
    json: OnceLock<Box<[u8]>>,
}

/// The served group versions, each with its lazily built document.
fn cache() -> &'static [Cached] {
    static DOCS: OnceLock<Vec<Cached>> = OnceLock::new();
    DOCS.get_or_init(|| {
        registry::groups()
            .into_iter()
            .flat_map(|(group, versions)| {
                versions.into_iter().map(move |version| Cached {
                    path: gv_path(group, version),
                    group,
                    version,
                    json: OnceLock::new(),
                })
            })
            .collect()
    })
}

/// The serialized document of `api/v1` or `apis/<group>/<version>` (`application/json`), built on
/// first use and kept as bytes — about a fifth of the heap a `Value` of it takes; None if no such
/// group version.
pub fn v3_group_version_json(path: &str) -> Option<&'static [u8]> {
    let entry = cache().iter().find(|c| c.path == path)?;
    let json = entry.json.get_or_init(|| {
        // Serializing a `Value` cannot fail: its map keys are strings.
        serde_json::to_vec(&build(entry.group, entry.version)).unwrap_or_default().into_boxed_slice()
    });
    Some(json)
}

/// The document of `api/v1` or `apis/<group>/<version>`; None if no such group version. Parsed from
/// the cached bytes, for tests.
#[cfg(test)]
pub fn v3_group_version(path: &str) -> Option<Value> {
    serde_json::from_slice(v3_group_version_json(path)?).ok()
}

fn param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

/// `content` of a body of the named schema in each of `types`.
fn media(name: &str, types: &[&str]) -> Value {
    let media: Map<String, Value> =
        types.iter().map(|t| ((*t).to_string(), json!({ "schema": reference(name) }))).collect();
    Value::Object(media)
}

/// A response, with a JSON body of the named schema if there is one.
fn response(name: Option<&str>, description: &str) -> Value {
    let mut response = json!({ "description": description });
    if let Some(name) = name {
        response["content"] = media(name, JSON);
    }
    response
}

/// What an operation takes and answers: the request body's schema and media types, the response's
/// schema, and whether it may answer 201 Created.
struct Bodies<'a> {
    request: Option<(&'a str, &'a [&'a str])>,
    response: Option<&'a str>,
    created: bool,
}

fn operation(res: &ResourceInfo, action: &str, params: &[Value], bodies: Bodies) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), response(bodies.response, "OK"));
    if bodies.created {
        responses.insert("201".into(), response(bodies.response, "Created"));
    }
    let mut op = json!({
        "operationId": format!("{action}{}", res.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": res.group, "version": res.version, "kind": res.kind},
        "parameters": params,
        "responses": responses,
    });
    if let Some((name, types)) = bodies.request {
        op["requestBody"] = json!({"required": true, "content": media(name, types)});
    }
    op
}

const JSON: &[&str] = &["application/json"];
/// The patch types the request body lists. `application/strategic-merge-patch+json` is left out on
/// purpose though tug accepts it: kubectl's client-side apply and diff compute a strategic merge patch
/// from the document's schemas when the type is listed, and the typed model's schemas lack the patch
/// strategies and merge keys (`x-kubernetes-patch-*`), so lists such as `containers` would lose their
/// `$setElementOrder`/`$patch: delete` directives. Unlisted, kubectl falls back to its compiled-in types.
const PATCH_TYPES: &[&str] =
    &["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"];

/// Builds the document of one group version.
fn build(group: &str, version: &str) -> Value {
    let resources: Vec<&ResourceInfo> = registry::resources_of(group, version).collect();
    let components = schema::components(group, version, resources.iter().map(|r| r.kind));
    let write_params = [
        param("dryRun", "When present, indicates that modifications should not be persisted."),
        param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields."),
    ];
    let base = format!("/{}", gv_path(group, version));
    let mut paths = Map::new();
    for res in resources {
        let collection = if res.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", res.plural)
        } else {
            format!("{base}/{}", res.plural)
        };
        let (item, collection_ops) = resource_operations(res, &components, &write_params);
        if res.is_stored() {
            paths.insert(collection.clone(), collection_ops);
            paths.insert(format!("{collection}/{{name}}"), item);
        } else {
            paths.insert(collection.clone(), json!({"post": collection_ops["post"]}));
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", super::discovery::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": components.schemas},
    })
}

/// The operations of one resource's item path and of its collection path.
fn resource_operations(res: &ResourceInfo, c: &Components, write: &[Value]) -> (Value, Value) {
    let kind = c.kind_name(res.kind);
    let list = c.list_name(res.kind);
    let status = Some(c.status.as_str());
    let with = |request, response, created| Bodies { request, response, created };
    let body = kind.map(|k| (k, JSON));
    let delete = Some((c.delete_options.as_str(), JSON));
    let item = json!({
        "get": operation(res, "get", &[], with(None, kind, false)),
        "put": operation(res, "put", write, with(body, kind, true)),
        "patch": operation(res, "patch", write, with(Some((c.patch.as_str(), PATCH_TYPES)), kind, true)),
        "delete": operation(res, "delete", &[], with(delete, status, false)),
    });
    let collection = json!({
        "get": operation(res, "list", &[], with(None, list.as_deref(), false)),
        "post": operation(res, "post", write, with(body, kind, true)),
        "delete": operation(res, "deletecollection", &[], with(delete, status, false)),
    });
    (item, collection)
}

#[cfg(test)]
mod tests;
