//! API benchmark, side by side with etcd from the OS packages in the same run:
//! - creates per second of ~1 KiB ConfigMaps over HTTPS through tug's full API path (kube-rs client),
//!   against etcd puts of the same value size over gRPC, at 1, 16 and 64 concurrent clients, with
//!   p50/p99 latency;
//! - watch fan-out: 100 watchers that must each receive every event of a 64-client write burst;
//! - idle RSS after start and after 10,000 objects, time to /readyz (fresh data dir, certificates
//!   included), and the binary's size.
//!
//! Run: `cargo bench --bench api_throughput` (env BENCH_CREATES to change the creates per run).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use common::TugServer;

const VALUE_BYTES: usize = 1000;

struct Stats {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn stats(total: Duration, mut latencies: Vec<Duration>) -> Stats {
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len() - 1))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Stats {
        per_second: latencies.len() as f64 / total.as_secs_f64(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

fn payload() -> String {
    "x".repeat(VALUE_BYTES)
}

async fn kube_client(server: &TugServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// `total` creates spread over `clients` concurrent loops; names start with `prefix`.
async fn tug_creates(api: &Api<ConfigMap>, prefix: &str, clients: usize, total: usize) -> Stats {
    let started = Instant::now();
    let per_client = total / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let api = api.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("{prefix}-{c}-{i}")}, "data": {"v": payload()}
                    }))
                    .expect("configmap");
                    let t = Instant::now();
                    api.create(&PostParams::default(), &cm)
                        .await
                        .expect("create");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    stats(started.elapsed(), all)
}

struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_etcd() -> Etcd {
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.path())
        .args([
            "--listen-client-urls",
            &endpoint,
            "--advertise-client-urls",
            &endpoint,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args([
            "--initial-cluster",
            &format!("bench={peer_url}"),
            "--log-level",
            "error",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd (apt package etcd-server) must be installed for the benchmark");
    Etcd {
        child,
        _dir: dir,
        endpoint,
    }
}

async fn etcd_puts(
    client: &etcd_client::Client,
    prefix: &str,
    clients: usize,
    total: usize,
) -> Stats {
    let started = Instant::now();
    let per_client = total / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut kv = client.kv_client();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let t = Instant::now();
                    kv.put(format!("/{prefix}/{c}/{i}"), payload(), None)
                        .await
                        .expect("put");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    stats(started.elapsed(), all)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// 100 watchers must each see every one of `writes` creates made by 64 clients.
async fn watch_fanout(api: &Api<ConfigMap>, writes: usize) -> (usize, usize, Stats) {
    let watchers = 100;
    let expected = (writes / 64) * 64;
    let rv = api
        .list_metadata(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let counts: Vec<_> = (0..watchers)
        .map(|_| {
            let api = api.clone();
            let rv = rv.clone();
            tokio::spawn(async move {
                let mut stream = api
                    .watch(&WatchParams::default().labels("fan=out").timeout(120), &rv)
                    .await
                    .expect("watch")
                    .boxed();
                let mut seen = 0;
                while seen < expected {
                    match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                        Ok(Some(Ok(WatchEvent::Added(_)))) => seen += 1,
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|c| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in 0..writes / 64 {
                    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("fan-{c}-{i}"), "labels": {"fan": "out"}}, "data": {"v": payload()}
                    }))
                    .expect("cm");
                    let t = Instant::now();
                    api.create(&PostParams::default(), &cm).await.expect("create");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let write_stats = stats(started.elapsed(), all);
    let mut complete = 0;
    for c in counts {
        if c.await.expect("watcher") == expected {
            complete += 1;
        }
    }
    (complete, watchers, write_stats)
}

fn time_to_ready() -> Duration {
    let mut samples: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let server = TugServer::start();
            let elapsed = started.elapsed();
            drop(server);
            elapsed
        })
        .collect();
    samples.sort();
    samples[2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let creates: usize = std::env::var("BENCH_CREATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_tug"))
        .map(|m| m.len())
        .unwrap_or(0);
    let ready = tokio::task::block_in_place(time_to_ready);

    let server = TugServer::start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(server.pid());
    let client = kube_client(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let etcd = start_etcd();
    let etcd_client = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let attempt = match etcd_client::Client::connect([etcd.endpoint.as_str()], None).await {
                Ok(mut c) => c.status().await.map(|_| c),
                Err(e) => Err(e),
            };
            match attempt {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("etcd did not start: {e}"),
            }
        }
    };

    println!("## Creates of ~1 KiB objects, {creates} per run\n");
    println!("| clients | tug creates/s | tug p50 ms | tug p99 ms | etcd puts/s | etcd p50 ms | etcd p99 ms | tug/etcd |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for clients in [1usize, 16, 64] {
        let t = tug_creates(&api, &format!("c{clients}"), clients, creates).await;
        let e = etcd_puts(&etcd_client, &format!("c{clients}"), clients, creates).await;
        println!(
            "| {clients} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} |",
            t.per_second,
            t.p50_ms,
            t.p99_ms,
            e.per_second,
            e.p50_ms,
            e.p99_ms,
            t.per_second / e.per_second
        );
    }

    let (complete, watchers, during) = watch_fanout(&api, creates).await;
    println!("\n## Watch fan-out\n\n{complete}/{watchers} watchers received every one of {} events while 64 clients created at {:.0}/s (p99 {:.2} ms).", (creates / 64) * 64, during.per_second, during.p99_ms);

    let stored = api
        .list_metadata(&Default::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    let fill = 10_000usize.saturating_sub(stored);
    if fill > 0 {
        tug_creates(&api, "fill", 50, fill.div_ceil(50) * 50).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full_rss = rss_kib(server.pid());
    let etcd_rss = rss_kib(etcd.child.id());
    println!("\n## Footprint\n");
    println!("| measure | tug | reference |");
    println!("| --- | --- | --- |");
    println!(
        "| RSS idle after start | {:.1} MiB | |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| RSS with 10,000+ ConfigMaps (~1 KiB) | {:.1} MiB | etcd holding {} keys: {:.1} MiB |",
        full_rss as f64 / 1024.0,
        3 * creates,
        etcd_rss as f64 / 1024.0
    );
    println!("| process start to /readyz (fresh data dir, certificates generated), median of 5 | {} ms | |", ready.as_millis());
    println!(
        "| binary size | {:.1} MiB | |",
        binary as f64 / (1024.0 * 1024.0)
    );
}
