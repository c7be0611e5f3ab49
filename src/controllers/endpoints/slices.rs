//! The EndpointSlices of a Service (upstream's endpointslice controller): its endpoints grouped by their
//! resolved ports, at most 100 to a slice, written onto the slices the service already has for the same
//! ports (updated only when they differ, so a steady service causes no writes), new slices created with
//! generateName `<service>-`, leftovers deleted. Slices carry the `kubernetes.io/service-name` and
//! managed-by labels and a controller reference to the Service, so the garbage collector removes them
//! with it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::ResourceExt;

use super::desired::{self, PodEndpoint};
use crate::controllers::claim;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// The slices the service should have, each keyed by its port set.
fn wanted(
    service: &Service,
    endpoints: &[PodEndpoint],
    labels: &BTreeMap<String, String>,
) -> Vec<(String, EndpointSlice)> {
    let mut groups: BTreeMap<String, Vec<&PodEndpoint>> = BTreeMap::new();
    for endpoint in endpoints {
        groups.entry(desired::ports_key(&endpoint.ports)).or_default().push(endpoint);
    }
    let address_type = match service.spec.as_ref().and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first()) {
        Some(family) if family == "IPv6" => "IPv6",
        _ => "IPv4",
    };
    let ports = |group: &[&PodEndpoint]| group.first().map(|e| e.ports.clone()).unwrap_or_default();
    let slice = |chunk: &[&PodEndpoint]| EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", service.name_any())),
            namespace: service.namespace(),
            labels: Some(labels.clone()),
            owner_references: claim::controller_ref(service).map(|o| vec![o]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: chunk.iter().map(|e| desired::slice_endpoint(e)).collect(),
        ports: Some(ports(chunk)),
    };
    let mut out = Vec::new();
    for (key, group) in &groups {
        out.extend(group.chunks(desired::MAX_PER_SLICE).map(|chunk| (key.clone(), slice(chunk))));
    }
    if out.is_empty() {
        // A service with no endpoints still has one empty slice, as upstream keeps.
        out.push((String::new(), slice(&[])));
    }
    out
}

/// Brings the service's slices to what `endpoints` say.
pub async fn reconcile(
    api: &Api<EndpointSlice>,
    service: &Service,
    endpoints: &[PodEndpoint],
    labels: BTreeMap<String, String>,
) -> kube::Result<()> {
    let mut labels = labels;
    labels.insert(SERVICE_NAME_LABEL.into(), service.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let selector = format!("{SERVICE_NAME_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY}", service.name_any());
    let mut existing = api.list(&ListParams::default().labels(&selector)).await?.items;
    existing.sort_by_key(|s| s.name_any());
    let mut by_ports: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        let key = slice.ports.as_deref().map(desired::ports_key).unwrap_or_default();
        by_ports.entry(key).or_default().push(slice);
    }
    for (key, mut slice) in wanted(service, endpoints, &labels) {
        let reusable = by_ports.get_mut(&key).filter(|s| !s.is_empty()).map(|s| s.remove(0));
        match reusable {
            Some(current) if same(&current, &slice) => {}
            Some(current) => {
                slice.metadata.name = current.metadata.name.clone();
                slice.metadata.generate_name = None;
                slice.metadata.resource_version = current.metadata.resource_version.clone();
                api.replace(&current.name_any(), &PostParams::default(), &slice).await?;
            }
            None => {
                api.create(&PostParams::default(), &slice).await?;
            }
        }
    }
    for leftover in by_ports.into_values().flatten() {
        match api.delete(&leftover.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn same(current: &EndpointSlice, wanted: &EndpointSlice) -> bool {
    current.endpoints == wanted.endpoints
        && current.ports.clone().unwrap_or_default() == wanted.ports.clone().unwrap_or_default()
        && current.address_type == wanted.address_type
        && current.metadata.labels == wanted.metadata.labels
}
