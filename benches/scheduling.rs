//! Control-plane benchmark on simulated nodes: `tug simulate` registers BENCH_NODES nodes (default
//! 1,000), then one Deployment of BENCH_PODS replicas (default 10,000) is created. Reported: how fast
//! pods are created, bound (pods/s between the first and the last bind) and Running, the time until all
//! are Running, the server's peak RSS, and the latency of API reads (GET of a node) probed every 20 ms
//! during the churn. The reference is the target (≥ 1,000 pods/s bound, all Running in < 30 s,
//! RSS < 500 MB, p99 < 1 s); kube-scheduler is not in the OS packages to run beside it.
//!
//! Run: `cargo bench --bench scheduling` (BENCH_NODES, BENCH_PODS; TUG_TEST_BINARY for another build).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use common::{Simulator, TugServer};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn kube_client(server: &TugServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Latencies of GETs of one node, every 20 ms until `stop`.
async fn probe(nodes: Api<Node>, name: String, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let _ = nodes.get(&name).await;
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies
}

#[tokio::main]
async fn main() {
    let (node_count, pod_count) = (env_count("BENCH_NODES", 1000), env_count("BENCH_PODS", 10_000));
    let server = TugServer::start();
    let client = kube_client(&server).await;
    let nodes_arg = node_count.to_string();
    let _simulator = Simulator::start(&server, &["--nodes", &nodes_arg, "--cpu", "32", "--memory", "64Gi"]);
    let nodes: Api<Node> = Api::all(client.clone());
    let registered = Instant::now();
    while nodes.list_metadata(&ListParams::default()).await.map_or(0, |l| l.items.len()) < node_count {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registration = registered.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(server.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe(nodes.clone(), "sim-0".into(), stop.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default().labels("app=bench"))
        .default_backoff()
        .applied_objects());
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"replicas": pod_count, "selector": {"matchLabels": {"app": "bench"}},
            "template": {"metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}},
    }))
    .expect("deployment");
    let started = Instant::now();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create");

    let (mut created, mut bound, mut running) =
        (std::collections::HashSet::new(), std::collections::HashSet::new(), std::collections::HashSet::new());
    let (mut first_bind, mut last_bind, mut last_create, mut all_running) = (None, None, None, None);
    let mut peak_rss = idle_rss;
    let deadline = started + Duration::from_secs(600);
    while all_running.is_none() && Instant::now() < deadline {
        let Ok(Some(Ok(pod))) = tokio::time::timeout(Duration::from_secs(5), events.next()).await else { continue };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = started.elapsed();
        if created.insert(name.clone()) && created.len() == pod_count {
            last_create = Some(now);
        }
        if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() && bound.insert(name.clone()) {
            first_bind.get_or_insert(now);
            if bound.len() == pod_count {
                last_bind = Some(now);
            }
        }
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && running.insert(name)
            && running.len() == pod_count
        {
            all_running = Some(now);
        }
        if created.len() % 500 == 0 {
            peak_rss = peak_rss.max(rss_kib(server.pid()));
        }
    }
    peak_rss = peak_rss.max(rss_kib(server.pid()));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = prober.await.expect("prober");
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let secs = |d: Option<Duration>| d.map_or("not reached".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    let rate = |n: usize, d: Option<Duration>| {
        d.map_or("-".to_string(), |d| format!("{:.0}/s", n as f64 / d.as_secs_f64().max(1e-9)))
    };
    let bind_window = first_bind.zip(last_bind).map(|(a, b)| b.saturating_sub(a));

    println!("\n## Scheduling: {node_count} simulated nodes, one Deployment of {pod_count} replicas\n");
    println!("| measure | tug | target |");
    println!("| --- | --- | --- |");
    println!("| node registration ({node_count}) | {} | |", secs(Some(registration)));
    println!("| all pods created | {} ({}) | |", secs(last_create), rate(pod_count, last_create));
    println!("| pods bound per second (first to last bind) | {} | ≥ 1,000/s |", rate(pod_count, bind_window));
    println!("| all pods bound | {} | |", secs(last_bind));
    println!("| all pods Running | {} | < 30 s |", secs(all_running));
    println!("| server RSS idle with the nodes | {:.1} MiB | |", idle_rss as f64 / 1024.0);
    println!("| server RSS peak during the rollout | {:.1} MiB | < 500 MB |", peak_rss as f64 / 1024.0);
    println!(
        "| API GET p50 / p99 during the churn ({} probes) | {:.1} / {:.1} ms | p99 < 1 s (aim 100 ms) |",
        latencies.len(),
        pick(0.5),
        pick(0.99)
    );
    println!("\n(counts seen: {} created, {} bound, {} running)", created.len(), bound.len(), running.len());
}
