//! Namespace controller (upstream's namespace lifecycle): a namespace being deleted (phase Terminating,
//! held by the `kubernetes` spec finalizer) has every namespaced resource in it deleted, reports what
//! remains in its status conditions as upstream words them, and once nothing is left gives up its
//! finalizer through `/finalize`, so the API server removes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::api_resource;
use crate::core::registry;

const FINALIZER: &str = "kubernetes";
/// How soon to look again while content remains (pods take their grace period to go).
const RECHECK: Duration = Duration::from_secs(2);

/// Runs until the client's server goes away.
pub async fn run(client: Client) {
    Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .run(reconcile, super::retry_later, Arc::new(client))
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// What is still in a namespace: instances per resource, and instances per finalizer.
#[derive(Default)]
struct Remaining {
    resources: BTreeMap<String, usize>,
    finalizers: BTreeMap<String, usize>,
}

async fn reconcile(namespace: Arc<Namespace>, client: Arc<Client>) -> Result<Action, kube::Error> {
    let name = namespace.name_any();
    let finalizers = namespace.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if namespace.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let remaining = empty(&client, &name).await?;
    let api: Api<Namespace> = Api::all(client.as_ref().clone());
    let conditions = conditions(&remaining);
    let current = namespace.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if !same_conditions(&current, &conditions) {
        let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
        api.patch_status(&name, &PatchParams::default(), &patch).await?;
    }
    if !remaining.resources.is_empty() {
        return Ok(Action::requeue(RECHECK));
    }
    let mut finalized = namespace.as_ref().clone();
    finalized.metadata.managed_fields = None;
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    match api.replace_subresource("finalize", &name, &PostParams::default(), &finalized).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

/// Deletes everything in the namespace and reports what is left.
async fn empty(client: &Client, namespace: &str) -> kube::Result<Remaining> {
    let mut remaining = Remaining::default();
    for res in registry::RESOURCES.iter().filter(|r| r.namespaced && r.is_stored()) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource(res));
        let left = api.list_metadata(&ListParams::default()).await?;
        if left.items.is_empty() {
            continue;
        }
        if left.items.iter().any(|o| o.metadata.deletion_timestamp.is_none()) {
            api.delete_collection(&DeleteParams::background(), &ListParams::default()).await?;
        }
        let left = api.list_metadata(&ListParams::default()).await?;
        if left.items.is_empty() {
            continue;
        }
        let group_resource =
            if res.group.is_empty() { res.plural.to_string() } else { format!("{}.{}", res.plural, res.group) };
        remaining.resources.insert(group_resource, left.items.len());
        for finalizer in left.items.iter().flat_map(|o| o.metadata.finalizers.iter().flatten()) {
            *remaining.finalizers.entry(finalizer.clone()).or_default() += 1;
        }
    }
    Ok(remaining)
}

fn condition(kind: &str, status: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(jiff::Timestamp::now())),
    }
}

/// Upstream's deletion conditions.
fn conditions(remaining: &Remaining) -> Vec<NamespaceCondition> {
    let mut conditions = vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        condition(
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        ),
    ];
    conditions.push(if remaining.resources.is_empty() {
        condition("NamespaceContentRemaining", "False", "ContentRemoved", "All content successfully removed".into())
    } else {
        let list: Vec<String> =
            remaining.resources.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
        condition(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", list.join(", ")),
        )
    });
    conditions.push(if remaining.finalizers.is_empty() {
        condition(
            "NamespaceFinalizersRemaining",
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let list: Vec<String> =
            remaining.finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        let message = format!("Some content in the namespace has finalizers remaining: {}", list.join(", "));
        condition("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain", message)
    });
    conditions
}

/// Equal apart from transition times.
fn same_conditions(a: &[NamespaceCondition], b: &[NamespaceCondition]) -> bool {
    let strip = |c: &NamespaceCondition| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone());
    a.len() == b.len() && a.iter().map(strip).eq(b.iter().map(strip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_name_what_remains_as_upstream_does() {
        let remaining = Remaining {
            resources: BTreeMap::from([("pods".to_string(), 2), ("deployments.apps".to_string(), 1)]),
            finalizers: BTreeMap::from([("example.com/keep".to_string(), 1)]),
        };
        let conditions = conditions(&remaining);
        let message = |kind: &str| conditions.iter().find(|c| c.type_ == kind).and_then(|c| c.message.clone()).unwrap();
        assert_eq!(
            message("NamespaceContentRemaining"),
            "Some resources are remaining: deployments.apps has 1 resource instances, pods has 2 resource instances"
        );
        assert_eq!(
            message("NamespaceFinalizersRemaining"),
            "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
        );
        assert!(same_conditions(&conditions, &self::conditions(&remaining)));
        assert!(!same_conditions(&conditions, &self::conditions(&Remaining::default())));
    }
}
