//! What the replica controller needs of the two kinds it keeps — apps/v1 ReplicaSet and core/v1
//! ReplicationController, which upstream runs as one controller — behind one trait: the selector, the
//! wanted count, the template and minReadySeconds. Their status fields share names, so one status
//! serves both.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use kube::core::Selector;
use kube::Resource;
use serde::de::DeserializeOwned;

use super::claim;

/// A kind whose controller keeps N pods from a template.
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Its kind, as in its pods' controller references.
    const KIND: &'static str;
    /// The pods it selects; None for an empty selector, which selects nothing here.
    fn selector(&self) -> Option<Selector>;
    fn replicas(&self) -> i32;
    fn template(&self) -> Option<PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
}

impl Replicated for ReplicaSet {
    const KIND: &'static str = "ReplicaSet";

    fn selector(&self) -> Option<Selector> {
        claim::selector_of(&self.spec.as_ref()?.selector)
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn template(&self) -> Option<PodTemplateSpec> {
        self.spec.as_ref()?.template.clone()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
}

impl Replicated for ReplicationController {
    const KIND: &'static str = "ReplicationController";

    fn selector(&self) -> Option<Selector> {
        let labels = self.spec.as_ref()?.selector.clone().filter(|s| !s.is_empty())?;
        Some(labels.into_iter().collect())
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn template(&self) -> Option<PodTemplateSpec> {
        self.spec.as_ref()?.template.clone()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::SelectorExt;
    use serde_json::json;

    #[test]
    fn a_replication_controller_selects_by_its_label_map() {
        let rc: ReplicationController = serde_json::from_value(json!({"metadata": {"name": "rc"},
            "spec": {"replicas": 2, "selector": {"app": "web"}, "template": {"metadata": {"labels": {"app": "web"}}}}}))
        .expect("rc");
        let selector = rc.selector().expect("selector");
        assert!(selector.matches(&[("app".to_string(), "web".to_string())].into()));
        assert!(!selector.matches(&Default::default()));
        assert_eq!(rc.replicas(), 2);
        let empty: ReplicationController =
            serde_json::from_value(json!({"metadata": {"name": "rc"}, "spec": {}})).expect("rc");
        assert!(empty.selector().is_none());
    }
}
