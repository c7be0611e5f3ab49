//! ServiceAccount and root CA publishing: every namespace that is not terminating gets a `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap holding the cluster CA (as upstream's
//! serviceaccount and root-ca-cert-publisher controllers), recreated if deleted and corrected if edited.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;

/// The ConfigMap every namespace gets with the cluster CA.
const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

struct Context {
    client: Client,
    ca_pem: String,
}

/// Runs until the client's server goes away.
pub async fn run(client: Client, ca_pem: String) {
    let by_namespace = |meta: &ObjectMeta| meta.namespace.clone().map(|ns| ObjectRef::<Namespace>::new(&ns));
    let context = Arc::new(Context { client: client.clone(), ca_pem });
    Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default().fields("metadata.name=default"),
            move |sa| by_namespace(&sa.metadata),
        )
        .watches(
            Api::<ConfigMap>::all(client),
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")),
            move |cm| by_namespace(&cm.metadata),
        )
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let Some(ns) = namespace.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(context.client.clone(), ns);
    if accounts.get_opt("default").await?.is_none() {
        let account = ServiceAccount { metadata: named("default"), ..Default::default() };
        super::ignore_conflict(accounts.create(&PostParams::default(), &account).await)?;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), ns);
    let want = BTreeMap::from([("ca.crt".to_string(), context.ca_pem.clone())]);
    match config_maps.get_opt(ROOT_CA_CONFIGMAP).await? {
        None => {
            let cm = ConfigMap { metadata: named(ROOT_CA_CONFIGMAP), data: Some(want), ..Default::default() };
            super::ignore_conflict(config_maps.create(&PostParams::default(), &cm).await)?;
        }
        Some(mut cm) if cm.data.as_ref() != Some(&want) || cm.binary_data.is_some() => {
            (cm.data, cm.binary_data) = (Some(want), None);
            config_maps.replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &cm).await?;
        }
        Some(_) => {}
    }
    Ok(Action::requeue(Duration::from_secs(3600)))
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_string()), ..Default::default() }
}
