//! Pod startup latency and node memory on the real runtime (root, containerd, runc, CNI; the project's
//! own images). A `tug server --disable-agent` and a separate `tug agent` joined to it on this host
//! (so the agent's memory is its own). Measured, on a warm image:
//! - create → Running as a watch sees it, one pod at a time (BENCH_SINGLE pods, default 10) and
//!   BENCH_BATCH pods at once (default 30), p50/p99;
//! - beside it, `ctr run -d` of the same image on the agent's containerd, one at a time and as many at
//!   once: the runtime's own floor (no sandbox, no network);
//! - RSS of the agent, its containerd and the shims, idle and with the batch running; the server's too.
//!
//! Run: `cargo bench --profile profiling --bench pod_startup` (as root; TUG_TEST_BINARY for another build).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;

use common::{node, server_binary, TugServer};

const NODE_NAME: &str = "bench-agent";
const IMAGE: &str = "tug.local/busybox:1";

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Resident memory of `pids` together, MiB.
fn rss_mib(pids: &[u32]) -> f64 {
    let kib: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum();
    kib as f64 / 1024.0
}

/// Processes whose command line contains every one of `needles`.
fn pids_matching(needles: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if needles.iter().all(|n| cmdline.contains(n)) {
            found.push(pid);
        }
    }
    found
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (percentile(&samples, 50.0), percentile(&samples, 99.0))
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

struct Agent {
    dir: tempfile::TempDir,
    child: Child,
}

impl Agent {
    fn start(server: &TugServer) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = dir.path().join("agent/images");
        std::fs::create_dir_all(&images).expect("images dir");
        for image in node::images() {
            std::fs::copy(image, images.join(image.file_name().expect("name"))).expect("copy image");
        }
        let child = Command::new(server_binary())
            .args(["agent", "--config", "/dev/null", "--server", &format!("https://127.0.0.1:{}", server.port)])
            .arg("--token-file")
            .arg(server.data_dir().join("server/token"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--node-name", NODE_NAME, "--node-ip", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).expect("log"))
            .spawn()
            .expect("start tug agent");
        Agent { dir, child }
    }

    fn containerd_pids(&self) -> Vec<u32> {
        pids_matching(&["containerd", "--config", &self.dir.path().to_string_lossy()])
            .into_iter()
            .filter(|pid| !self.shim_pids().contains(pid))
            .collect()
    }

    fn shim_pids(&self) -> Vec<u32> {
        pids_matching(&["containerd-shim", &self.dir.path().to_string_lossy()])
    }

    fn stop(mut self) {
        node::kill_containers(self.dir.path());
        let _ = self.child.kill();
        let _ = self.child.wait();
        node::clean_up(self.dir.path());
    }
}

async fn kube_client(server: &TugServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {"nodeName": NODE_NAME, "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "3600"]}]}
    }))
    .expect("pod")
}

/// When each bench pod was first seen Running.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn watch_running(pods: Api<Pod>) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let config = watcher::Config::default().labels("bench=startup");
        let mut events = watcher(pods, config).boxed();
        while let Some(Ok(event)) = events.next().await {
            let (watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = event else { continue };
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if let (true, Some(name)) = (running, p.metadata.name) {
                record.lock().expect("seen").entry(name).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

/// Creates `names` at once; the time from each create to Running.
async fn start_pods(pods: &Api<Pod>, seen: &Seen, names: &[String]) -> Vec<Duration> {
    let creates = names.iter().map(|name| async move {
        let at = Instant::now();
        pods.create(&PostParams::default(), &pod(name)).await.expect("create pod");
        at
    });
    let started: Vec<Instant> = futures::future::join_all(creates).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let seen = seen.lock().expect("seen").clone();
        if names.iter().all(|n| seen.contains_key(n)) {
            return names.iter().zip(started).map(|(n, at)| seen[n] - at).collect();
        }
        assert!(Instant::now() < deadline, "pods did not all start within 5 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn delete_all(pods: &Api<Pod>) {
    let params = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
    let _ = pods.delete_collection(&params, &ListParams::default().labels("bench=startup")).await;
    while !pods.list(&ListParams::default().labels("bench=startup")).await.expect("list").items.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `ctr run -d` of the bench image as `id`; how long it took.
fn ctr_run(data_dir: &Path, id: &str) -> Duration {
    let at = Instant::now();
    let status = Command::new("ctr")
        .arg("--address")
        .arg(node::containerd_socket(data_dir))
        .args(["--namespace", "k8s.io", "run", "-d", IMAGE, id, "sleep", "3600"])
        .stdout(Stdio::null())
        .status()
        .expect("ctr run");
    assert!(status.success(), "ctr run failed");
    at.elapsed()
}

fn ctr_remove(data_dir: &Path, id: &str) {
    node::ctr(data_dir, &["tasks", "kill", "--signal", "SIGKILL", id]);
    for _ in 0..50 {
        if node::ctr(data_dir, &["tasks", "ls", "-q"]).lines().all(|t| t != id) {
            break;
        }
        node::ctr(data_dir, &["tasks", "delete", id]);
        std::thread::sleep(Duration::from_millis(100));
    }
    node::ctr(data_dir, &["containers", "delete", id]);
}

fn ctr_batch(data_dir: &Path, prefix: &str, count: usize) -> Vec<Duration> {
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let times = std::thread::scope(|scope| {
        let handles: Vec<_> = ids.iter().map(|id| scope.spawn(move || ctr_run(data_dir, id))).collect();
        handles.into_iter().map(|h| h.join().expect("ctr thread")).collect()
    });
    ids.iter().for_each(|id| ctr_remove(data_dir, id));
    times
}

#[tokio::main]
async fn main() {
    if !node::available() {
        return;
    }
    let (single, batch) = (env_count("BENCH_SINGLE", 10), env_count("BENCH_BATCH", 30));
    let server = TugServer::start();
    let agent = Agent::start(&server);
    let client = kube_client(&server).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !nodes.get_opt(NODE_NAME).await.ok().flatten().is_some_and(|n| ready(&n)) {
        assert!(
            Instant::now() < deadline,
            "the agent's node did not become Ready; log:\n{}",
            std::fs::read_to_string(agent.dir.path().join("agent.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let seen = watch_running(pods.clone());

    // Warm: the image is unpacked and the first sandbox made before anything is timed.
    start_pods(&pods, &seen, &["warm-0".to_string()]).await;
    delete_all(&pods).await;
    ctr_run(agent.dir.path(), "warm-ctr");
    ctr_remove(agent.dir.path(), "warm-ctr");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let agent_pid = agent.child.id();
    let idle = (rss_mib(&[agent_pid]), rss_mib(&agent.containerd_pids()), rss_mib(&[server.pid()]));

    let mut one_by_one = Vec::new();
    for i in 0..single {
        one_by_one.extend(start_pods(&pods, &seen, &[format!("single-{i}")]).await);
        delete_all(&pods).await;
    }
    let ctr_one: Vec<Duration> =
        (0..single).flat_map(|i| ctr_batch(agent.dir.path(), &format!("single-{i}"), 1)).collect();

    let names: Vec<String> = (0..batch).map(|i| format!("batch-{i}")).collect();
    let at_once = start_pods(&pods, &seen, &names).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let loaded = (
        rss_mib(&[agent_pid]),
        rss_mib(&agent.containerd_pids()),
        rss_mib(&agent.shim_pids()),
        rss_mib(&[server.pid()]),
    );
    delete_all(&pods).await;
    let ctr_many = ctr_batch(agent.dir.path(), "batch", batch);

    let row = |what: &str, tug: Vec<Duration>, ctr: Vec<Duration>| {
        let ((t50, t99), (c50, c99)) = (summary(tug), summary(ctr));
        let ratio = t99.as_secs_f64() / c99.as_secs_f64();
        let target = c99.mul_f64(1.3) + Duration::from_millis(200);
        println!(
            "| {what} | {} / {} | {} / {} | {ratio:.2}x | {} ({}) |",
            ms(t50),
            ms(t99),
            ms(c50),
            ms(c99),
            ms(target),
            if t99 <= target { "met" } else { "missed" }
        );
    };
    println!(
        "| pods | tug create→Running p50 / p99 | ctr run -d p50 / p99 | p99 ratio | target p99 ≤ 1.3x ctr + 200 ms |"
    );
    println!("| --- | --- | --- | --- | --- |");
    row(&format!("1 at a time ({single})"), one_by_one, ctr_one);
    row(&format!("{batch} at once"), at_once, ctr_many);
    println!();
    println!("| RSS (MiB) | tug agent | its containerd | shims | tug server (control plane) |");
    println!("| --- | --- | --- | --- | --- |");
    println!("| idle, node Ready | {:.1} | {:.1} | 0 | {:.1} |", idle.0, idle.1, idle.2);
    println!("| {batch} pods running | {:.1} | {:.1} | {:.1} | {:.1} |", loaded.0, loaded.1, loaded.2, loaded.3);
    agent.stop();
}
