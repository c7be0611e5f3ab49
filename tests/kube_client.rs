//! A kube-rs client against a real `tug server`: typed CRUD, and a watcher-fed reflector that stays in
//! sync across a kill -9 and restart of the server.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Client;

use common::TugServer;

async fn client(server: &TugServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(config).expect("client")
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"v": value}})).expect("configmap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud() {
    let server = TugServer::start();
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms.create(&PostParams::default(), &config_map("typed", "1")).await.expect("create");
    let rv = created.metadata.resource_version.clone().expect("rv");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let mut changed = created.clone();
    changed.data.get_or_insert_default().insert("v".into(), "2".into());
    let replaced = cms.replace("typed", &PostParams::default(), &changed).await.expect("replace");
    assert_ne!(replaced.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let stale = cms.replace("typed", &PostParams::default(), &changed).await.expect_err("stale replace");
    assert!(matches!(stale, kube::Error::Api(ref s) if s.code == 409), "{stale:?}");

    let patched = cms
        .patch("typed", &PatchParams::default(), &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .expect("patch");
    assert_eq!(patched.metadata.labels.as_ref().and_then(|l| l.get("x")).map(String::as_str), Some("y"));
    let listed = cms.list(&ListParams::default().labels("x=y")).await.expect("list");
    assert_eq!(listed.items.len(), 1);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .expect("deployment");
    let d = deployments.create(&PostParams::default(), &d).await.expect("create deployment");
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(1), "defaulted");
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(d.metadata.generation, Some(1));

    cms.delete("typed", &DeleteParams::default()).await.expect("delete");
    let missing = cms.get("typed").await.expect_err("deleted");
    assert!(matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"), "{missing:?}");
}

async fn wait_for(
    store: &reflector::Store<ConfigMap>,
    what: &str,
    check: impl Fn(&reflector::Store<ConfigMap>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check(store) {
        assert!(
            Instant::now() < deadline,
            "reflector never saw {what}; has {:?}",
            store.state().iter().map(|c| c.metadata.name.clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_stays_in_sync_across_a_server_restart() {
    let mut server = TugServer::start();
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default().timeout(5)))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    cms.create(&PostParams::default(), &config_map("before", "1")).await.expect("create");
    wait_for(&reader, "before", |s| s.state().iter().any(|c| c.metadata.name.as_deref() == Some("before"))).await;

    tokio::task::block_in_place(|| server.kill_and_restart());

    cms.create(&PostParams::default(), &config_map("after", "1")).await.expect("create after restart");
    cms.delete("before", &DeleteParams::default()).await.expect("delete after restart");
    wait_for(&reader, "the changes made after the restart", |s| {
        let names: Vec<String> = s.state().iter().filter_map(|c| c.metadata.name.clone()).collect();
        names.contains(&"after".to_string()) && !names.contains(&"before".to_string())
    })
    .await;
    task.abort();
}
