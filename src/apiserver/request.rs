//! Turning a request path into what it addresses: a discovery document, an operations endpoint, or a
//! resource (group, version, namespace, name, subresource), with upstream's path rules.

use super::resource_metrics;
use crate::core::registry::{self, ResourceInfo};

use super::status::ApiError;

/// What a path addresses.
#[derive(Debug, Clone)]
pub enum Target {
    Version,
    /// `/api`
    LegacyRoot,
    /// `/apis`
    GroupsRoot,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    GroupVersion(String, String),
    Resource(ResourcePath),
    Healthz(String),
    Metrics,
    /// `/openapi/v3` and `/openapi/v3/<...>`
    OpenApiV3(Option<String>),
    /// `/openapi/v2`
    OpenApiV2,
    /// metrics.k8s.io's NodeMetrics and PodMetrics.
    ResourceMetrics(resource_metrics::MetricsPath),
}

/// A resource path.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

fn unknown(path: &str) -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource").with_path(path)
}

impl ApiError {
    fn with_path(mut self, path: &str) -> ApiError {
        self.details = Some(
            serde_json::json!({"causes": [{"reason": "UnexpectedServerResponse", "message": format!("404 page not found: {path}")}]}),
        );
        self
    }
}

/// Parses a request path.
pub fn parse(path: &str) -> Result<Target, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').skip(1).collect();
    match parts.as_slice() {
        ["version"] => Ok(Target::Version),
        ["api"] => Ok(Target::LegacyRoot),
        ["apis"] => Ok(Target::GroupsRoot),
        ["metrics"] => Ok(Target::Metrics),
        ["openapi", "v2"] => Ok(Target::OpenApiV2),
        ["openapi", "v3"] => Ok(Target::OpenApiV3(None)),
        ["openapi", "v3", rest @ ..] => Ok(Target::OpenApiV3(Some(rest.join("/")))),
        [check @ ("healthz" | "livez" | "readyz"), ..] => Ok(Target::Healthz((*check).to_string())),
        ["api", version] => known_group_version("", version, path),
        ["apis", resource_metrics::GROUP, resource_metrics::VERSION, rest @ ..] if !rest.is_empty() => {
            resource_metrics::parse(&rest.join("/")).map(Target::ResourceMetrics).ok_or_else(|| unknown(path))
        }
        ["apis", resource_metrics::GROUP] => Ok(Target::Group(resource_metrics::GROUP.to_string())),
        ["apis", resource_metrics::GROUP, resource_metrics::VERSION] => {
            Ok(Target::GroupVersion(resource_metrics::GROUP.to_string(), resource_metrics::VERSION.to_string()))
        }
        ["apis", group] => {
            if registry::groups().iter().any(|(g, _)| g == group) {
                Ok(Target::Group((*group).to_string()))
            } else {
                Err(unknown(path))
            }
        }
        ["apis", group, version] => known_group_version(group, version, path),
        ["api", version, rest @ ..] => resource_path("", version, rest, path),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest, path),
        _ => Err(unknown(path)),
    }
}

fn known_group_version(group: &str, version: &str, path: &str) -> Result<Target, ApiError> {
    if registry::resources_of(group, version).next().is_some() {
        Ok(Target::GroupVersion(group.to_string(), version.to_string()))
    } else {
        Err(unknown(path))
    }
}

fn resource_path(group: &str, version: &str, rest: &[&str], path: &str) -> Result<Target, ApiError> {
    let find = |plural: &str| registry::find(group, version, plural).ok_or_else(|| unknown(path));
    let (namespace, rest) = match rest {
        // /namespaces/<ns>/<resource>... unless it is a namespace's own subresource.
        ["namespaces", ns, resource, tail @ ..] if !(tail.is_empty() && matches!(*resource, "status" | "finalize")) => {
            (Some((*ns).to_string()), [&[*resource][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (find(resource)?, None, None),
        [resource, name] => (find(resource)?, Some(*name), None),
        [resource, name, sub] => (find(resource)?, Some(*name), Some(*sub)),
        _ => return Err(unknown(path)),
    };
    if namespace.is_some() && !resource.namespaced {
        return Err(unknown(path));
    }
    if let Some(sub) = subresource {
        let offered = resource.subresources.iter().any(|s| s.name() == sub);
        if !offered {
            return Err(unknown(path));
        }
    }
    if name.is_some_and(|n| n.is_empty()) {
        return Err(unknown(path));
    }
    Ok(Target::Resource(ResourcePath {
        resource,
        namespace,
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Ok(Target::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_resource_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(
            (r.resource.plural, r.namespace.as_deref(), r.name.as_deref(), r.subresource.as_deref()),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!((r.resource.plural, r.name.as_deref()), ("namespaces", Some("kube-system")));
        let r = res("/api/v1/namespaces/kube-system/status");
        assert_eq!((r.resource.plural, r.subresource.as_deref()), ("namespaces", Some("status")));
        let r = res("/apis/apps/v1/deployments");
        assert_eq!((r.resource.kind, r.namespace), ("Deployment", None));
    }

    #[test]
    fn rejects_unknown_paths() {
        assert!(parse("/api/v1/widgets").is_err());
        assert!(parse("/api/v1/namespaces/default/nodes").is_err());
        assert!(parse("/api/v1/namespaces/default/configmaps/x/status").is_err());
        assert!(parse("/apis/nope").is_err());
        assert!(matches!(parse("/apis/apps/v1"), Ok(Target::GroupVersion(g, v)) if g == "apps" && v == "v1"));
    }
}
