//! What the API benchmarks share: timed concurrent loops and their statistics, tug's lean creates and
//! etcd's puts of the same value size, and etcd from the OS packages (`etcd-server`) on loopback, one
//! member or a cluster.

// Each benchmark uses a part.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use super::common::TugServer;

const VALUE_BYTES: usize = 1000;

pub struct Stats {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn stats(total: Duration, mut latencies: Vec<Duration>) -> Stats {
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Stats { per_second: latencies.len() as f64 / total.as_secs_f64(), p50_ms: pick(0.50), p99_ms: pick(0.99) }
}

pub fn payload() -> String {
    "x".repeat(VALUE_BYTES)
}

pub async fn kube_client(server: &TugServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let options = KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Runs `per_client` timed operations in each of `clients` concurrent loops.
pub async fn timed<F, Fut>(clients: usize, per_client: usize, op: F) -> Stats
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let t = Instant::now();
                    op(c, i).await;
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

/// One create of ConfigMap `name` through a lean client, as etcd-client is one: the JSON body is built
/// per request and the response (the created object) is read whole but not decoded into a typed object.
pub async fn lean_create(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": payload()}});
    let request = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    let created = client.request_text(request).await?;
    assert!(created.contains("\"resourceVersion\""), "not a created object: {created}");
    Ok(())
}

/// `total` lean creates spread over `clients` loops, loop `c` going through `servers[c % len]`.
pub async fn tug_lean_creates(servers: &[kube::Client], prefix: &str, clients: usize, total: usize) -> Stats {
    let (servers, prefix) = (servers.to_vec(), prefix.to_string());
    timed(clients, total / clients, move |c, i| {
        let (client, name) = (servers[c % servers.len()].clone(), format!("{prefix}-{c}-{i}"));
        async move { lean_create(&client, &name).await.expect("create") }
    })
    .await
}

pub async fn etcd_puts(client: &etcd_client::Client, prefix: &str, clients: usize, total: usize) -> Stats {
    let (client, prefix) = (client.clone(), prefix.to_string());
    timed(clients, total / clients, move |c, i| {
        let mut kv = client.kv_client();
        let key = format!("/{prefix}/{c}/{i}");
        async move {
            kv.put(key, payload(), None).await.expect("put");
        }
    })
    .await
}

/// One etcd member, killed when dropped.
pub struct Etcd {
    pub child: Child,
    dir: tempfile::TempDir,
    pub name: String,
    pub endpoint: String,
    args: Vec<String>,
}

impl Etcd {
    fn spawn(dir: &std::path::Path, args: &[String]) -> Child {
        Command::new("etcd")
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (apt package etcd-server) must be installed for the benchmark")
    }

    /// Kills the member with SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the (killed) member again on its data dir.
    pub fn restart(&mut self) {
        self.child = Etcd::spawn(self.dir.path(), &self.args);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().map(|a| a.port()).expect("free port")
}

/// An etcd cluster of `members` on loopback, default fsync behaviour.
pub fn start_etcd_cluster(members: usize) -> Vec<Etcd> {
    let ports: Vec<(u16, u16)> = (0..members).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
    ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer))| {
            let dir = tempfile::tempdir().expect("tempdir");
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let args: Vec<String> = [
                "--name",
                &format!("m{i}"),
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &initial.join(","),
                "--log-level",
                "error",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            let child = Etcd::spawn(dir.path(), &args);
            Etcd { child, dir, name: format!("m{i}"), endpoint, args }
        })
        .collect()
}

/// A client of the members at `endpoints`, once they answer.
pub async fn connect_etcd(endpoints: &[String]) -> etcd_client::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = match etcd_client::Client::connect(endpoints, None).await {
            Ok(mut c) => c.status().await.map(|_| c),
            Err(e) => Err(e),
        };
        match attempt {
            Ok(c) => return c,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("etcd did not start: {e}"),
        }
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Writes per Raft log entry (each entry costs one log fsync on every member) and per store transaction,
/// with the transactions' mean time, from the servers' /metrics (summed: only a leader proposes).
pub async fn write_batching(servers: &[kube::Client]) -> String {
    let mut sums = [0.0; 5];
    let names = [
        "tug_raft_proposed_entries_total ",
        "tug_raft_proposed_writes_total ",
        "tug_store_write_batches_total ",
        "tug_store_write_commands_total ",
        "tug_store_commit_seconds_sum ",
    ];
    for client in servers {
        let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
        let metrics = client.request_text(request).await.unwrap_or_default();
        for (sum, name) in sums.iter_mut().zip(names) {
            *sum += metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    let [entries, writes, batches, commands, commit_seconds] = sums;
    format!(
        "{writes:.0} writes in {entries:.0} Raft entries ({:.1} per entry, one log fsync each); {commands:.0} \
         applied in {batches:.0} store transactions (each open {:.2} ms on average)",
        writes / entries.max(1.0),
        1e3 * commit_seconds / batches.max(1.0)
    )
}

/// CPU time (user + system, all threads) the processes `pids` have used so far, from /proc.
pub fn cpu_time(pids: &[u32]) -> Duration {
    let ticks_per_second: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .expect("getconf CLK_TCK");
    let ticks: u64 = pids
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
            // The fields after the parenthesized command name; utime and stime are the 12th and 13th.
            let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
        })
        .sum();
    Duration::from_secs_f64(ticks as f64 / ticks_per_second)
}
