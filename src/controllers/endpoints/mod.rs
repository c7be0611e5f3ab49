//! Endpoints and EndpointSlice controllers (upstream's endpoint and endpointslice controllers) as one
//! loop over Services: each Service with a selector gets an Endpoints object of its name and
//! EndpointSlices (`slices.rs`) listing the pods it selects, kept in step as pods come, go and change
//! readiness (`desired.rs` has the rules). Services without a selector are left to their users. When a
//! Service goes, its Endpoints go with it (slices go through their owner reference); Endpoints left by a
//! Service deleted while the server was down are removed once the Services are known.

mod desired;
mod slices;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::claim;

/// Marks Endpoints objects that are leader-election locks, not a service's endpoints (upstream spares
/// them too).
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

struct Context {
    client: Client,
    pods: Store<Pod>,
}

/// Runs until the client's server goes away, following pods through the shared `pod_cache` and
/// `pod_events`.
pub async fn run(client: Client, pod_cache: Store<Pod>, pod_events: impl Stream<Item = Arc<Pod>> + Send + 'static) {
    let controller = Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let services = controller.store();
    let context = Arc::new(Context { client: client.clone(), pods: pod_cache });
    let follow = controller
        .watches_shared_stream(pod_events, move |pod| claim::selecting(&services, pod.as_ref(), selector))
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()));
    tokio::join!(follow, remove_orphans(client));
}

/// The service's selector; None when it has none (its endpoints are its users' to manage).
fn selector(service: &Service) -> Option<Selector> {
    let labels = service.spec.as_ref()?.selector.clone().filter(|s| !s.is_empty())?;
    Some(labels.into_iter().collect())
}

async fn reconcile(service: Arc<Service>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let (Some(ns), Some(selector)) = (service.namespace(), selector(&service)) else {
        return Ok(Action::await_change());
    };
    if service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let selected: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selector.matches(p.labels()))
        .collect();
    let endpoints = desired::pod_endpoints(&service, &selected);
    let mut labels = service.labels().clone();
    if desired::is_headless(&service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    write_endpoints(&Api::namespaced(context.client.clone(), &ns), &service, &endpoints, labels.clone()).await?;
    slices::reconcile(&Api::namespaced(context.client.clone(), &ns), &service, &endpoints, labels).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Creates or updates the Endpoints object, writing only when it changes.
async fn write_endpoints(
    api: &Api<Endpoints>,
    service: &Service,
    endpoints: &[desired::PodEndpoint],
    labels: BTreeMap<String, String>,
) -> kube::Result<()> {
    let (subsets, truncated) = desired::subsets(service, endpoints);
    let current = api.get_opt(&service.name_any()).await?;
    let mut annotations = current.as_ref().and_then(|e| e.metadata.annotations.clone()).unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    let wanted = Endpoints {
        metadata: ObjectMeta {
            name: Some(service.name_any()),
            namespace: service.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            resource_version: current.as_ref().and_then(|e| e.metadata.resource_version.clone()),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    match current {
        None => super::ignore_conflict(api.create(&PostParams::default(), &wanted).await),
        Some(current)
            if current.subsets.clone().unwrap_or_default() == wanted.subsets.clone().unwrap_or_default()
                && current.metadata.labels.clone().unwrap_or_default()
                    == wanted.metadata.labels.clone().unwrap_or_default()
                && current.metadata.annotations == wanted.metadata.annotations =>
        {
            Ok(())
        }
        Some(_) => api.replace(&service.name_any(), &PostParams::default(), &wanted).await.map(drop),
    }
}

/// Deletes Endpoints whose Service is gone: at once when a Service's deletion is seen, and after every
/// (re)list for those whose deletion was missed.
async fn remove_orphans(client: Client) {
    let services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default());
    let mut services = std::pin::pin!(kube::runtime::WatchStreamExt::default_backoff(services));
    let mut listed: HashSet<(String, String)> = HashSet::new();
    while let Some(event) = services.next().await {
        let result = match event {
            Ok(watcher::Event::Delete(service)) => {
                let api: Api<Endpoints> = Api::namespaced(client.clone(), &service.namespace().unwrap_or_default());
                delete_endpoints(&api, &service.name_any()).await
            }
            Ok(watcher::Event::Init) => {
                listed.clear();
                Ok(())
            }
            Ok(watcher::Event::InitApply(service)) => {
                listed.insert((service.namespace().unwrap_or_default(), service.name_any()));
                Ok(())
            }
            Ok(watcher::Event::InitDone) => delete_unserved(&client, &listed).await,
            Ok(watcher::Event::Apply(_)) => Ok(()),
            Err(error) => {
                tracing::debug!(%error, "endpoints controller: service watch");
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "endpoints controller: could not remove a service's endpoints");
        }
    }
}

async fn delete_endpoints(api: &Api<Endpoints>, name: &str) -> kube::Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes every Endpoints object (leader locks aside) whose Service is not among `services`.
async fn delete_unserved(client: &Client, services: &HashSet<(String, String)>) -> kube::Result<()> {
    let all = Api::<Endpoints>::all(client.clone()).list(&ListParams::default()).await?;
    for endpoints in all.items {
        let key = (endpoints.namespace().unwrap_or_default(), endpoints.name_any());
        if services.contains(&key) || endpoints.annotations().contains_key(LEADER_ANNOTATION) {
            continue;
        }
        delete_endpoints(&Api::namespaced(client.clone(), &key.0), &key.1).await?;
    }
    Ok(())
}
