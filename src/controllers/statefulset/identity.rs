//! The stable identity of a StatefulSet's pods: `<set>-<ordinal>` names, the pod-name and pod-index
//! labels, hostname and subdomain (the governing Service), and one PersistentVolumeClaim per
//! volumeClaimTemplate named `<claim>-<set>-<ordinal>`, mounted in place of the template's volume of the
//! same name, owned as persistentVolumeClaimRetentionPolicy says.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use kube::api::ObjectMeta;
use kube::ResourceExt;

use crate::controllers::claim;
use crate::controllers::history::REVISION_LABEL;
use crate::controllers::pods;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The ordinals the set keeps: `ordinals.start` and the `replicas` after it.
pub fn wanted(set: &StatefulSet) -> std::ops::Range<i32> {
    let spec = set.spec.as_ref();
    let start = spec.and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0).max(0);
    start..start + spec.and_then(|s| s.replicas).unwrap_or(1).max(0)
}

/// Whether `persistentVolumeClaimRetentionPolicy.whenScaled` is Delete.
pub fn claims_leave_with_scaled_pods(set: &StatefulSet) -> bool {
    let policy = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    policy.and_then(|p| p.when_scaled.as_deref()) == Some("Delete")
}

/// The ordinal of one of the set's pods, from its name.
pub fn ordinal_of(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.name_any();
    let rest = name.strip_prefix(&format!("{}-", set.name_any()))?;
    rest.parse().ok().filter(|n: &i32| *n >= 0 && n.to_string() == rest)
}

/// The name of claim template `claim` for `ordinal`.
pub fn claim_name(set: &StatefulSet, claim: &str, ordinal: i32) -> String {
    format!("{claim}-{}-{ordinal}", set.name_any())
}

/// The pod for `ordinal`, made from `template` of revision `revision`.
pub fn pod(set: &StatefulSet, ordinal: i32, revision: &str, template: &PodTemplateSpec) -> Pod {
    let spec = set.spec.as_ref();
    let name = format!("{}-{ordinal}", set.name_any());
    let mut pod = pods::from_template(Some(template.clone()), &set.name_any(), claim::controller_ref(set));
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    if let Some(pod_spec) = pod.spec.as_mut() {
        pod_spec.hostname = Some(name);
        pod_spec.subdomain = spec.and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
        for claim in claims(set, ordinal) {
            let template_name = claim.labels().get(CLAIM_TEMPLATE_KEY).cloned().unwrap_or_default();
            let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
            volumes.retain(|v| v.name != template_name);
            volumes.push(Volume {
                name: template_name,
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.name_any(),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
    }
    pod
}

/// Marks, on a claim made here, which template it came from (removed before writing).
const CLAIM_TEMPLATE_KEY: &str = "tug.internal/claim-template";

/// The claims `ordinal` needs, one per volumeClaimTemplate, labelled with the set's selector labels and
/// owned by the set when `whenDeleted: Delete`.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.as_ref();
    let selector_labels = spec.and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    let delete_with_set =
        spec.and_then(|s| s.persistent_volume_claim_retention_policy.as_ref()).and_then(|p| p.when_deleted.as_deref())
            == Some("Delete");
    spec.and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|template| {
            let template_name = template.name_any();
            let meta = template.metadata;
            let mut labels = meta.labels.unwrap_or_default();
            labels.extend(selector_labels.clone());
            labels.insert(CLAIM_TEMPLATE_KEY.into(), template_name.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(set, &template_name, ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: meta.annotations,
                    owner_references: delete_with_set.then(|| claim::controller_ref(set)).flatten().map(|o| vec![o]),
                    ..Default::default()
                },
                spec: template.spec,
                status: None,
            }
        })
        .collect()
}

/// The claim as it is written (without the template marker).
pub fn for_writing(mut claim: PersistentVolumeClaim) -> PersistentVolumeClaim {
    if let Some(labels) = claim.metadata.labels.as_mut() {
        labels.remove(CLAIM_TEMPLATE_KEY);
    }
    claim
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set() -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}],
                    "volumes": [{"name": "data", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}))
        .expect("set")
    }

    #[test]
    fn pods_have_stable_names_hostnames_and_their_own_claims() {
        let set = set();
        let template = set.spec.as_ref().expect("spec").template.clone();
        let pod = pod(&set, 2, "web-abc", &template);
        assert_eq!(pod.name_any(), "web-2");
        assert_eq!(pod.labels().get(POD_INDEX_LABEL).map(String::as_str), Some("2"));
        let spec = pod.spec.expect("spec");
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-2"), Some("web")));
        let volumes = spec.volumes.expect("volumes");
        assert_eq!(volumes.len(), 1, "the claim replaces the template's volume of the same name");
        assert_eq!(volumes[0].persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()), Some("data-web-2"));
        let claim = for_writing(claims(&set, 2).remove(0));
        assert_eq!(claim.name_any(), "data-web-2");
        assert_eq!(claim.labels().get("app").map(String::as_str), Some("web"));
        assert!(!claim.labels().contains_key(CLAIM_TEMPLATE_KEY));
    }

    #[test]
    fn ordinals_come_from_names() {
        let set = set();
        let named =
            |n: &str| Pod { metadata: ObjectMeta { name: Some(n.into()), ..Default::default() }, ..Default::default() };
        assert_eq!(ordinal_of(&set, &named("web-12")), Some(12));
        assert_eq!(ordinal_of(&set, &named("web-012")), None);
        assert_eq!(ordinal_of(&set, &named("webx-1")), None);
    }
}
