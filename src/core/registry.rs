//! The resource registry: every API resource tug serves (group, version, kind, plural, scope, verbs, short
//! names, categories, subresources). Pure data; the API server, discovery and OpenAPI are driven from it.

/// The standard verbs of a fully served resource.
pub const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// The verbs of a review: created and answered, never stored.
pub const CREATE_ONLY: &[&str] = &["create"];

/// A subresource a resource offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: get, update and patch of the status alone.
    Status,
    /// `/scale`: an autoscaling/v1 Scale view of spec.replicas.
    Scale,
    /// `/binding`: pods only, create assigns the pod to a node.
    Binding,
    /// `/finalize`: namespaces only, update changes spec.finalizers alone.
    Finalize,
    /// `/eviction`: pods only, create deletes the pod if its disruption budget allows.
    Eviction,
    /// `/log`: pods only, get streams a container's log from the node's kubelet.
    Log,
    /// `/exec`, `/attach`, `/portforward`: pods only, an upgraded connection to the node's kubelet.
    Exec,
    Attach,
    PortForward,
    /// `/token`: service accounts only, create issues a token (a TokenRequest).
    Token,
}

impl Subresource {
    /// The subresource's path segment.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Token => "token",
        }
    }

    /// The verbs discovery lists for the subresource.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
            Subresource::Finalize => &["update"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => &["create", "get"],
        }
    }
}

/// One served resource.
#[derive(Debug, Clone, Copy)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// What clients may do: [`ALL_VERBS`] for stored resources, [`CREATE_ONLY`] for reviews.
    pub verbs: &'static [&'static str],
}

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group as the store spells it in keys (`core` for the empty group).
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// The singular name: upstream's is the lower-case kind.
    pub fn singular(&self) -> String {
        self.kind.to_ascii_lowercase()
    }

    /// Whether objects of the resource are kept in the store (reviews are only answered).
    pub fn is_stored(&self) -> bool {
        self.verbs.contains(&"list")
    }

    /// Whether the resource offers `sub`.
    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The kind of the list object (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

use Subresource::{Attach, Binding, Eviction, Exec, Finalize, Log, PortForward, Scale, Status, Token};

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $namespaced:expr, $short:expr, $cats:expr, $subs:expr) => {
        resource!($group, $version, $kind, $plural, $namespaced, $short, $cats, $subs, ALL_VERBS)
    };
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $namespaced:expr, $short:expr, $cats:expr, $subs:expr, $verbs:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            namespaced: $namespaced,
            short_names: $short,
            categories: $cats,
            subresources: $subs,
            verbs: $verbs,
        }
    };
}

/// Every resource tug serves, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    resource!("", "v1", "Namespace", "namespaces", false, &["ns"], NONE, &[Status, Finalize]),
    resource!(
        "",
        "v1",
        "Pod",
        "pods",
        true,
        &["po"],
        ALL,
        &[Status, Binding, Eviction, Log, Exec, Attach, PortForward]
    ),
    resource!("", "v1", "Service", "services", true, &["svc"], ALL, &[Status]),
    resource!("", "v1", "Endpoints", "endpoints", true, &["ep"], NONE, &[]),
    resource!("", "v1", "ConfigMap", "configmaps", true, &["cm"], NONE, &[]),
    resource!("", "v1", "Secret", "secrets", true, NONE, NONE, &[]),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], NONE, &[Token]),
    resource!("", "v1", "Node", "nodes", false, &["no"], NONE, &[Status]),
    resource!("", "v1", "Event", "events", true, &["ev"], NONE, &[]),
    resource!("", "v1", "PersistentVolume", "persistentvolumes", false, &["pv"], NONE, &[Status]),
    resource!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"], NONE, &[Status]),
    resource!("", "v1", "LimitRange", "limitranges", true, &["limits"], NONE, &[]),
    resource!("", "v1", "ResourceQuota", "resourcequotas", true, &["quota"], NONE, &[Status]),
    resource!("", "v1", "PodTemplate", "podtemplates", true, NONE, NONE, &[]),
    resource!("", "v1", "ReplicationController", "replicationcontrollers", true, &["rc"], ALL, &[Status, Scale]),
    // apps/v1
    resource!("apps", "v1", "Deployment", "deployments", true, &["deploy"], ALL, &[Status, Scale]),
    resource!("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"], ALL, &[Status, Scale]),
    resource!("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"], ALL, &[Status, Scale]),
    resource!("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], ALL, &[Status]),
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", true, NONE, NONE, &[]),
    // batch/v1
    resource!("batch", "v1", "Job", "jobs", true, NONE, ALL, &[Status]),
    resource!("batch", "v1", "CronJob", "cronjobs", true, &["cj"], ALL, &[Status]),
    // autoscaling/v2
    resource!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        ALL,
        &[Status]
    ),
    // coordination, discovery, events
    resource!("coordination.k8s.io", "v1", "Lease", "leases", true, NONE, NONE, &[]),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, NONE, NONE, &[]),
    resource!("events.k8s.io", "v1", "Event", "events", true, &["ev"], NONE, &[]),
    // networking
    resource!("networking.k8s.io", "v1", "Ingress", "ingresses", true, &["ing"], NONE, &[Status]),
    resource!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, NONE, NONE, &[]),
    resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, &["netpol"], NONE, &[]),
    // policy
    resource!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, &["pdb"], NONE, &[Status]),
    // rbac
    resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", true, NONE, NONE, &[]),
    resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, NONE, NONE, &[]),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, NONE, NONE, &[]),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, NONE, NONE, &[]),
    // storage
    resource!("storage.k8s.io", "v1", "StorageClass", "storageclasses", false, &["sc"], NONE, &[]),
    resource!("storage.k8s.io", "v1", "CSIDriver", "csidrivers", false, NONE, NONE, &[]),
    resource!("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", false, NONE, NONE, &[Status]),
    // authentication: reviews, answered and never stored
    resource!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", false, NONE, NONE, &[], CREATE_ONLY),
    resource!(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
        NONE,
        NONE,
        &[],
        CREATE_ONLY
    ),
    // scheduling, node, certificates
    resource!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false, &["pc"], NONE, &[]),
    resource!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", false, NONE, NONE, &[]),
    resource!(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        false,
        &["csr"],
        NONE,
        &[Status]
    ),
];

/// Looks a resource up by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups served, each with its versions (preferred first), in discovery order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources of one group version.
pub fn resources_of<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceInfo> + use<'a> {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_group_is_listed_first_with_v1() {
        let groups = groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert!(groups.iter().any(|(g, v)| *g == "autoscaling" && v == &vec!["v2"]));
    }

    #[test]
    fn lookups_find_by_group_version_and_plural() {
        assert_eq!(find("apps", "v1", "deployments").map(|r| r.kind), Some("Deployment"));
        assert!(find("apps", "v1", "pods").is_none());
    }
}
