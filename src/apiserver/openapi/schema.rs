//! The `components.schemas` of a group-version document, generated from k8s-openapi's typed model (its
//! schemars derivations) instead of written by hand. Schemas are named as upstream names them
//! (`io.k8s.api.apps.v1.Deployment`), `$ref`s point at `#/components/schemas/<name>` (a `$ref` with a
//! description beside it becomes `allOf: [{$ref}]`, as upstream's v3 documents have it), and each
//! served kind carries `x-kubernetes-group-version-kind: [{group, version, kind}]` — the extension
//! `kubectl explain` finds a resource's schema by. A `<Kind>List` schema is added for list responses.

use k8s_openapi::api::{
    apps, authentication, autoscaling, batch, certificates, coordination, core, discovery, events, networking, node,
    policy, rbac, scheduling, storage,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, Schema, SchemaGenerator};
use k8s_openapi::Resource;
use serde_json::{json, Map, Value};

/// How a `$ref` to a component schema starts.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// A kind of the typed model: its group, version and kind, and how to generate its schema.
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    schema: fn(&mut SchemaGenerator) -> Schema,
}

const fn kind<T: Resource + JsonSchema>() -> Kind {
    Kind { group: T::GROUP, version: T::VERSION, kind: T::KIND, schema: SchemaGenerator::subschema_for::<T> }
}

/// Every kind tug serves, with the group, version and kind taken from the typed model itself.
pub static KINDS: &[Kind] = &[
    kind::<core::v1::Namespace>(),
    kind::<core::v1::Pod>(),
    kind::<core::v1::Service>(),
    kind::<core::v1::Endpoints>(),
    kind::<core::v1::ConfigMap>(),
    kind::<core::v1::Secret>(),
    kind::<core::v1::ServiceAccount>(),
    kind::<core::v1::Node>(),
    kind::<core::v1::Event>(),
    kind::<core::v1::PersistentVolume>(),
    kind::<core::v1::PersistentVolumeClaim>(),
    kind::<core::v1::LimitRange>(),
    kind::<core::v1::ResourceQuota>(),
    kind::<core::v1::PodTemplate>(),
    kind::<core::v1::ReplicationController>(),
    kind::<apps::v1::Deployment>(),
    kind::<apps::v1::ReplicaSet>(),
    kind::<apps::v1::StatefulSet>(),
    kind::<apps::v1::DaemonSet>(),
    kind::<apps::v1::ControllerRevision>(),
    kind::<batch::v1::Job>(),
    kind::<batch::v1::CronJob>(),
    kind::<autoscaling::v2::HorizontalPodAutoscaler>(),
    kind::<coordination::v1::Lease>(),
    kind::<discovery::v1::EndpointSlice>(),
    kind::<events::v1::Event>(),
    kind::<networking::v1::Ingress>(),
    kind::<networking::v1::IngressClass>(),
    kind::<networking::v1::NetworkPolicy>(),
    kind::<policy::v1::PodDisruptionBudget>(),
    kind::<rbac::v1::Role>(),
    kind::<rbac::v1::RoleBinding>(),
    kind::<rbac::v1::ClusterRole>(),
    kind::<rbac::v1::ClusterRoleBinding>(),
    kind::<storage::v1::StorageClass>(),
    kind::<storage::v1::CSIDriver>(),
    kind::<storage::v1::VolumeAttachment>(),
    kind::<authentication::v1::TokenReview>(),
    kind::<authentication::v1::SelfSubjectReview>(),
    kind::<scheduling::v1::PriorityClass>(),
    kind::<node::v1::RuntimeClass>(),
    kind::<certificates::v1::CertificateSigningRequest>(),
];

/// Looks a kind of the typed model up.
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The component schemas of one group version, and the names its operations refer to.
#[derive(Debug, Default)]
pub struct Components {
    /// `components.schemas`.
    pub schemas: Map<String, Value>,
    /// Each kind that has a schema, with the name of its schema.
    pub kinds: Vec<(&'static str, String)>,
    /// meta/v1 Status, for delete responses.
    pub status: String,
    /// meta/v1 Patch, for patch request bodies.
    pub patch: String,
    /// meta/v1 DeleteOptions, for delete request bodies.
    pub delete_options: String,
}

impl Components {
    /// The schema name of `kind`, if it has one.
    pub fn kind_name(&self, kind: &str) -> Option<&str> {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, name)| name.as_str())
    }

    /// The schema name of `kind`'s list, if the kind has a schema.
    pub fn list_name(&self, kind: &str) -> Option<String> {
        self.kind_name(kind).map(list_name)
    }
}

fn list_name(kind_name: &str) -> String {
    format!("{kind_name}List")
}

/// `{"$ref": "#/components/schemas/<name>"}`.
pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// The component name a `$ref` schema points at.
fn ref_name(schema: &Schema) -> Option<String> {
    schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(REF_PREFIX)).map(str::to_string)
}

/// Generates the schemas of `kinds` of `group`/`version` and everything they reference; kinds the
/// typed model lacks get none.
pub fn components<'a>(group: &str, version: &str, kinds: impl IntoIterator<Item = &'a str>) -> Components {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let mut out = Components::default();
    for kind in kinds {
        let Some(k) = find_kind(group, version, kind) else {
            continue;
        };
        if let Some(name) = ref_name(&(k.schema)(&mut gen)) {
            out.kinds.push((k.kind, name));
        }
    }
    let list_meta = ref_name(&gen.subschema_for::<meta::ListMeta>());
    out.status = meta::Status::schema_name().into_owned();
    out.patch = meta::Patch::schema_name().into_owned();
    out.delete_options = meta::DeleteOptions::schema_name().into_owned();
    gen.subschema_for::<meta::Status>();
    gen.subschema_for::<meta::Patch>();
    gen.subschema_for::<meta::DeleteOptions>();
    out.schemas = gen.take_definitions(true);
    for (kind, name) in &out.kinds {
        let gvk = |kind: &str| json!([{"group": group, "version": version, "kind": kind}]);
        let Some(Value::Object(schema)) = out.schemas.get_mut(name) else {
            continue;
        };
        schema.insert("x-kubernetes-group-version-kind".into(), gvk(kind));
        // The typed model requires `metadata` (its ObjectMeta is not optional); upstream does not.
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|r| r != "metadata");
            if required.is_empty() {
                schema.remove("required");
            }
        }
        let list = list_schema(kind, name, schema, list_meta.as_deref(), gvk(&format!("{kind}List")));
        out.schemas.insert(list_name(name), list);
    }
    out
}

/// The schema of `<Kind>List`, which the typed model has no type for.
fn list_schema(kind: &str, name: &str, item: &Map<String, Value>, list_meta: Option<&str>, gvk: Value) -> Value {
    let mut properties = Map::new();
    for field in ["apiVersion", "kind"] {
        if let Some(p) = item.get("properties").and_then(|p| p.get(field)) {
            properties.insert(field.into(), p.clone());
        }
    }
    properties.insert(
        "items".into(),
        json!({"description": format!("List of {kind} objects."), "type": "array", "items": reference(name)}),
    );
    if let Some(list_meta) = list_meta {
        properties.insert(
            "metadata".into(),
            json!({"description": "Standard list metadata.", "allOf": [reference(list_meta)]}),
        );
    }
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": properties,
        "required": ["items"],
        "x-kubernetes-group-version-kind": gvk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::RESOURCES;

    #[test]
    fn every_served_resource_has_a_kind_of_the_typed_model() {
        for r in RESOURCES {
            assert!(find_kind(r.group, r.version, r.kind).is_some(), "{}/{} {}", r.group, r.version, r.kind);
        }
    }

    #[test]
    fn kinds_get_upstream_names_and_their_gvk() {
        let c = components("apps", "v1", ["Deployment"]);
        assert_eq!(c.kind_name("Deployment"), Some("io.k8s.api.apps.v1.Deployment"));
        let d = &c.schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert!(d.get("required").is_none());
        let list = &c.schemas["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(list["x-kubernetes-group-version-kind"][0]["kind"], "DeploymentList");
        assert!(c.schemas.contains_key(&c.status));
        assert!(c.schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
    }
}
