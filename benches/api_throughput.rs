//! API benchmark, side by side with etcd from the OS packages in the same run:
//! - creates per second of ~1 KiB ConfigMaps over HTTPS through tug's full API path, against etcd puts
//!   of the same value size over gRPC, at 1, 16 and 64 concurrent clients, with p50/p99 latency, CPU per
//!   write of server and client, and how many writes shared each fsync. The load generator for tug is
//!   lean as etcd-client is (JSON built per request, the response read whole but not decoded into a
//!   typed object); kube-rs's typed `Api::create` is measured beside it;
//! - watch fan-out: 100 watchers that must each receive every event of a 64-client write burst;
//! - RSS idle, with 10,000 objects and after listing them all, time to /readyz (fresh data dir,
//!   certificates included), and the binary's size.
//!
//! Run: `cargo bench --bench api_throughput` (env BENCH_CREATES sets the creates per run, BENCH_ROUNDS how
//! many runs per client count — tug and etcd alternate, medians are reported —, BENCH_CLIENTS the client
//! counts; TUG_TEST_BINARY runs another build of tug, e.g. the `profiling` profile for perf).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/load.rs"]
mod load;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

use common::TugServer;
use load::{connect_etcd, etcd_puts, kube_client, median, payload, start_etcd_cluster, timed, tug_lean_creates, Stats};

/// `total` ConfigMap creates with `labels`, spread over `clients` loops; names start with `prefix`.
async fn tug_creates(api: &Api<ConfigMap>, prefix: &str, clients: usize, total: usize, labels: Value) -> Stats {
    let (api, prefix) = (api.clone(), prefix.to_string());
    timed(clients, total / clients, move |c, i| {
        let (api, prefix, labels) = (api.clone(), prefix.clone(), labels.clone());
        async move {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("{prefix}-{c}-{i}"), "labels": labels}, "data": {"v": payload()}
            }))
            .expect("configmap");
            api.create(&PostParams::default(), &cm).await.expect("create");
        }
    })
    .await
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Medians over rounds of one side (tug or etcd) at one client count.
#[derive(Default)]
struct Rounds {
    per_second: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    server_cpu: Vec<f64>,
    client_cpu: Vec<f64>,
}

impl Rounds {
    fn add(&mut self, (stats, server_cpu, client_cpu): (Stats, f64, f64)) {
        self.per_second.push(stats.per_second);
        self.p50_ms.push(stats.p50_ms);
        self.p99_ms.push(stats.p99_ms);
        self.server_cpu.push(server_cpu);
        self.client_cpu.push(client_cpu);
    }

    /// Rate, p50 and p99 table cells.
    fn rates(&self) -> String {
        let m = |v: &Vec<f64>| median(v.clone());
        format!("{:.0} | {:.2} | {:.2}", m(&self.per_second), m(&self.p50_ms), m(&self.p99_ms))
    }

    /// Server and client CPU per write.
    fn cpu(&self) -> String {
        format!("{:.0}, {:.0}", median(self.server_cpu.clone()), median(self.client_cpu.clone()))
    }
}

/// CPU seconds (user + system) a process has used; /proc counts in USER_HZ, 100 on Linux.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// CPU microseconds per operation that a server process and this (client) process spent on `ops`.
async fn cpu_per_op<Fut: std::future::Future<Output = Stats>>(
    server_pid: u32,
    ops: usize,
    run: Fut,
) -> (Stats, f64, f64) {
    let server = server_pid.to_string();
    let (server_before, client_before) = (cpu_seconds(&server), cpu_seconds("self"));
    let stats = run.await;
    let per_op = |before: f64, now: f64| (now - before) * 1e6 / ops as f64;
    (stats, per_op(server_before, cpu_seconds(&server)), per_op(client_before, cpu_seconds("self")))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// 100 watchers must each see every one of `writes` creates made by 64 clients.
async fn watch_fanout(api: &Api<ConfigMap>, writes: usize) -> (usize, usize, Stats) {
    let watchers = 100;
    let expected = (writes / 64) * 64;
    let list = api.list_metadata(&Default::default()).await.expect("list");
    let rv = list.metadata.resource_version.unwrap_or_default();
    let counts: Vec<_> = (0..watchers)
        .map(|_| {
            let api = api.clone();
            let rv = rv.clone();
            tokio::spawn(async move {
                let params = WatchParams::default().labels("fan=out").timeout(120);
                let mut stream = api.watch(&params, &rv).await.expect("watch").boxed();
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
    let write_stats = tug_creates(api, "fan", 64, writes, json!({"fan": "out"})).await;
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

/// Client counts to measure: `BENCH_CLIENTS` (comma-separated, e.g. `64` while profiling) or 1, 16 and 64.
fn client_counts() -> Vec<usize> {
    std::env::var("BENCH_CLIENTS")
        .map(|v| v.split(',').map(|c| c.trim().parse().expect("BENCH_CLIENTS: comma-separated numbers")).collect())
        .unwrap_or_else(|_| vec![1, 16, 64])
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let creates: usize = std::env::var("BENCH_CREATES").ok().and_then(|v| v.parse().ok()).unwrap_or(4096);
    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_tug")).map(|m| m.len()).unwrap_or(0);
    let ready = tokio::task::block_in_place(time_to_ready);
    let etcd = start_etcd_cluster(1).pop().expect("one member");
    let etcd_client = connect_etcd(std::slice::from_ref(&etcd.endpoint)).await;

    let server = TugServer::start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = proc_status_kib(server.pid(), "VmRSS:");
    let client = kube_client(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    println!("## Creates of ~1 KiB objects, {creates} per run\n");
    println!(
        "| clients | tug creates/s | tug p50 ms | tug p99 ms | etcd puts/s | etcd p50 ms | etcd p99 ms | tug/etcd \
         | CPU µs per write: tug server, client | etcd server, client | tug with kube-rs's typed client: creates/s, \
         client CPU µs |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    for clients in client_counts() {
        let (mut tug, mut reference, mut typed, mut ratios) =
            (Rounds::default(), Rounds::default(), Rounds::default(), Vec::new());
        for round in 0..rounds {
            let prefix = format!("c{clients}r{round}");
            let t = cpu_per_op(
                server.pid(),
                creates,
                tug_lean_creates(std::slice::from_ref(&client), &prefix, clients, creates),
            )
            .await;
            let e = cpu_per_op(etcd.child.id(), creates, etcd_puts(&etcd_client, &prefix, clients, creates)).await;
            let typed_prefix = format!("{prefix}-typed");
            typed.add(
                cpu_per_op(server.pid(), creates, tug_creates(&api, &typed_prefix, clients, creates, json!({}))).await,
            );
            ratios.push(t.0.per_second / e.0.per_second);
            tug.add(t);
            reference.add(e);
        }
        println!(
            "| {clients} | {} | {} | {:.2} | {} | {} | {:.0}, {:.0} |",
            tug.rates(),
            reference.rates(),
            median(ratios),
            tug.cpu(),
            reference.cpu(),
            median(typed.per_second.clone()),
            median(typed.client_cpu.clone()),
        );
    }
    println!("\nStore: {}.", load::write_batching(std::slice::from_ref(&client)).await);

    let (complete, watchers, during) = watch_fanout(&api, creates).await;
    println!(
        "\n## Watch fan-out\n\n{complete}/{watchers} watchers received every one of {} events while 64 clients created at {:.0}/s (p99 {:.2} ms).",
        (creates / 64) * 64,
        during.per_second,
        during.p99_ms
    );
    drop(server);

    // Footprint on a fresh server holding exactly 10,000 objects.
    let server = TugServer::start();
    let api: Api<ConfigMap> = Api::namespaced(kube_client(&server).await, "default");
    tug_creates(&api, "fill", 16, 10_000, json!({"fill": "yes"})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full_rss = proc_status_kib(server.pid(), "VmRSS:");
    let listed = api.list(&ListParams::default().labels("fill=yes")).await.map(|l| l.items.len()).unwrap_or(0);
    assert_eq!(listed, 10_000);
    let after_list = proc_status_kib(server.pid(), "VmRSS:");
    let peak = proc_status_kib(server.pid(), "VmHWM:");
    let etcd_rss = proc_status_kib(etcd.child.id(), "VmRSS:");
    println!("\n## Footprint\n");
    println!("| measure | tug | reference |");
    println!("| --- | --- | --- |");
    println!("| RSS idle after start | {} | |", mib(idle_rss));
    println!(
        "| RSS with 10,000 ConfigMaps (~1 KiB) | {} | etcd holding {} keys: {} |",
        mib(full_rss),
        rounds * client_counts().len() * creates,
        mib(etcd_rss)
    );
    println!("| RSS after listing all 10,000 at once (peak) | {} ({}) | |", mib(after_list), mib(peak));
    println!(
        "| process start to /readyz (fresh data dir, certificates generated), median of 5 | {} ms | |",
        ready.as_millis()
    );
    println!("| binary size | {:.1} MiB | |", binary as f64 / (1024.0 * 1024.0));
}
