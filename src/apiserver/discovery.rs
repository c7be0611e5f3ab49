//! Discovery documents, generated from the registry: /version, the legacy /api, /apis, /apis/<group>
//! and per group-version resource lists, and aggregated discovery (apidiscovery.k8s.io v2 and v2beta1).

use serde_json::{json, Value};

use super::resource_metrics;
use crate::core::registry::{self, ResourceInfo, Subresource};

/// The Kubernetes version tug serves.
pub const KUBE_MINOR: &str = "33";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": crate::KUBERNETES_VERSION_OF_TUG,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("linux/{}", match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", "arm" => "arm", other => other }),
    })
}

/// `/api`.
pub fn legacy_root(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// The groups of `/apis`: the registry's, then metrics.k8s.io (served without storage).
fn served_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<_> = registry::groups().into_iter().filter(|(g, _)| !g.is_empty()).collect();
    groups.push((resource_metrics::GROUP, vec![resource_metrics::VERSION]));
    groups
}

/// `/apis`.
pub fn groups_root() -> Value {
    let groups: Vec<Value> = served_groups().into_iter().map(|(g, vs)| group_entry(g, &vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(name: &str) -> Option<Value> {
    let (_, versions) = served_groups().into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_entry(name, &versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// The kind a subresource answers with.
fn subresource_kind(res: &ResourceInfo, sub: Subresource) -> (&'static str, &'static str, &'static str) {
    match sub {
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Binding => ("", "v1", "Binding"),
        Subresource::Eviction => ("policy", "v1", "Eviction"),
        Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        Subresource::Exec => ("", "v1", "PodExecOptions"),
        Subresource::Attach => ("", "v1", "PodAttachOptions"),
        Subresource::PortForward => ("", "v1", "PodPortForwardOptions"),
        Subresource::Status | Subresource::Finalize | Subresource::Log => (res.group, res.version, res.kind),
    }
}

/// metrics.k8s.io's resources as `/apis/metrics.k8s.io/v1beta1` lists them.
fn metrics_resources() -> Vec<Value> {
    let entry = |(plural, kind, namespaced): &(&str, &str, bool)| json!({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]});
    resource_metrics::RESOURCES.iter().map(entry).collect()
}

/// metrics.k8s.io in aggregated discovery.
fn metrics_aggregated() -> Value {
    let resources: Vec<Value> = resource_metrics::RESOURCES
        .iter()
        .map(|(plural, kind, namespaced)| {
            json!({"resource": plural, "responseKind": {"group": resource_metrics::GROUP, "version": resource_metrics::VERSION, "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" }, "singularResource": "", "verbs": ["get", "list"]})
        })
        .collect();
    json!({"metadata": {"name": resource_metrics::GROUP, "creationTimestamp": null},
        "versions": [{"version": resource_metrics::VERSION, "resources": resources, "freshness": "Current"}]})
}

/// `/api/v1`, `/apis/<group>/<version>`.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    if (group, version) == (resource_metrics::GROUP, resource_metrics::VERSION) {
        resources = metrics_resources();
    }
    for r in registry::resources_of(group, version) {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
            "shortNames": r.short_names,
            "categories": r.categories,
        }));
        for sub in r.subresources {
            let (g, v, kind) = subresource_kind(r, *sub);
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": sub.verbs(),
            });
            // A kind from another group says which (kubectl drain finds policy/v1 Eviction this way).
            if !g.is_empty() && g != r.group {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// Aggregated discovery: the core group for `/api`, every other group for `/apis`.
pub fn aggregated(legacy: bool, api_version: &str) -> Value {
    let items: Vec<Value> = registry::groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == legacy)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"version": v, "resources": registry::resources_of(g, v).map(aggregated_resource).collect::<Vec<_>>(), "freshness": "Current"}))
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .chain((!legacy).then(metrics_aggregated))
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{api_version}"), "metadata": {}, "items": items})
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (g, v, kind) = subresource_kind(r, *sub);
            json!({"subresource": sub.name(), "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": sub.verbs()})
        })
        .collect();
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular(),
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_include_subresources() {
        let core = resource_list("", "v1");
        let names: Vec<&str> =
            core["resources"].as_array().expect("list").iter().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"pods/binding"));
        let apps = resource_list("apps", "v1");
        let scale = apps["resources"]
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .cloned()
            .expect("scale");
        assert_eq!(scale["group"], "autoscaling");
    }

    #[test]
    fn aggregated_splits_core_from_groups() {
        let core = aggregated(true, "v2");
        assert_eq!(core["items"].as_array().map(Vec::len), Some(1));
        let groups = aggregated(false, "v2");
        assert!(groups["items"].as_array().expect("items").iter().any(|g| g["metadata"]["name"] == "apps"));
    }
}
