//! Replicated writes, side by side in one run, everything on loopback:
//! - ~1 KiB creates through tug with one server and with three (clients spread over the servers;
//!   followers forward to the leader), against puts to a 3-member etcd cluster from the OS packages
//!   (etcd-client spreads its requests over the members), at 16 and 64 clients, medians of rounds;
//! - the time from SIGKILL of the leader to the first write accepted through a surviving member, for
//!   tug and for etcd, the client retrying every 10 ms; for tug also through an agent's load balancer
//!   that was using the killed leader (the agents being served again).
//!
//! Run: `cargo bench --bench replicated` (env BENCH_CREATES: creates per run, BENCH_ROUNDS: rounds,
//! BENCH_CLIENTS: client counts, BENCH_KILLS: leader kills per system).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/load.rs"]
mod load;

use std::time::{Duration, Instant};

use common::TugServer;
use k8s_openapi::api::core::v1::Endpoints;
use load::{connect_etcd, etcd_puts, kube_client, lean_create, median, start_etcd_cluster, tug_lean_creates, Etcd};
use tug::agent::balancer::Balancer;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Three servers: the first alone, the others joined through it.
fn tug_cluster() -> Vec<TugServer> {
    let mut servers = vec![TugServer::start()];
    let token = std::fs::read_to_string(servers[0].data_dir().join("server/token")).expect("token");
    let url = format!("https://127.0.0.1:{}", servers[0].port);
    for _ in 0..2 {
        servers.push(TugServer::start_with(&["--server", &url, "--token", token.trim()]));
    }
    servers
}

/// A client that gives up on a request after a second and never retries by itself; through `via`
/// (`host:port`) rather than the server itself when given.
async fn impatient_client(server: &TugServer, via: Option<std::net::SocketAddr>) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    if let Some(via) = via {
        config.cluster_url = format!("https://{via}").parse().expect("url");
    }
    config.read_timeout = Some(Duration::from_secs(1));
    config.connect_timeout = Some(Duration::from_secs(1));
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

/// Creates through `client` until one is accepted; how long that took from `since`.
async fn first_accepted_write(client: &kube::Client, name: &str, since: Instant) -> Duration {
    let mut attempt = 0;
    while lean_create(client, &format!("{name}-{attempt}")).await.is_err() {
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    since.elapsed()
}

/// The API servers' addresses the `kubernetes` Endpoints list.
async fn api_endpoints(client: &kube::Client) -> usize {
    let endpoints: kube::Api<Endpoints> = kube::Api::default_namespaced(client.clone());
    let Ok(endpoints) = endpoints.get("kubernetes").await else { return 0 };
    endpoints.subsets.unwrap_or_default().iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum()
}

/// Kills tug's leader and times the first create accepted through a survivor and, as an agent's
/// requests go, through an agent's load balancer that was using the leader (it knows the others from
/// the `kubernetes` Endpoints); the killed server is back and the cluster has a leader again when this
/// returns.
async fn tug_failover(servers: &mut [TugServer], round: usize) -> (Duration, Duration) {
    let leader = tokio::task::block_in_place(|| common::leader(servers));
    let survivor = impatient_client(&servers[(leader + 1) % 3], None).await;
    let listed_by = Instant::now() + Duration::from_secs(60);
    while api_endpoints(&survivor).await < 3 {
        assert!(Instant::now() < listed_by, "the kubernetes Endpoints do not list the three servers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let leader_address = format!("127.0.0.1:{}", servers[leader].port);
    let mut balancer = Balancer::start(agent_dir.path(), &leader_address, 0).await.expect("balancer");
    let agent = impatient_client(&servers[leader], Some(balancer.address())).await;
    balancer.follow_endpoints(agent.clone());
    // Learning the Endpoints is one watch event away.
    lean_create(&agent, &format!("before-failover-{round}")).await.expect("a write through the balancer");
    tokio::time::sleep(Duration::from_millis(500)).await;
    servers[leader].kill();
    let killed = Instant::now();
    let (direct, through_balancer) = (format!("failover-{round}"), format!("agent-failover-{round}"));
    let took = tokio::join!(
        first_accepted_write(&survivor, &direct, killed),
        first_accepted_write(&agent, &through_balancer, killed),
    );
    tokio::task::block_in_place(|| servers[leader].restart());
    took
}

/// The same for etcd: its leader found through the status API, puts retried through the others.
async fn etcd_failover(members: &mut [Etcd], round: usize) -> Duration {
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    let mut client = connect_etcd(&endpoints).await;
    let leader_id = client.status().await.expect("status").leader();
    let names = client.member_list().await.expect("members");
    let leader_name =
        names.members().iter().find(|m| m.id() == leader_id).map(|m| m.name().to_string()).expect("the leader");
    let leader = members.iter().position(|m| m.name == leader_name).expect("the leader's process");
    let survivors: Vec<String> =
        endpoints.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, e)| e.clone()).collect();
    let options = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(1));
    let survivor = etcd_client::Client::connect(&survivors, Some(options)).await.expect("connect");
    members[leader].kill();
    let killed = Instant::now();
    let mut kv = survivor.kv_client();
    while kv.put(format!("/failover/{round}"), "x", None).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = killed.elapsed();
    members[leader].restart();
    connect_etcd(&endpoints).await;
    took
}

/// Runs `work`, adding the CPU time the processes `pids` spend meanwhile to `spent`.
async fn on_cpu<T>(pids: &[u32], spent: &mut Duration, work: impl std::future::Future<Output = T>) -> T {
    let before = load::cpu_time(pids);
    let result = work.await;
    *spent += load::cpu_time(pids) - before;
    result
}

fn millis(durations: &[Duration]) -> String {
    let mut ms: Vec<String> = durations.iter().map(|d| format!("{}", d.as_millis())).collect();
    ms.sort();
    ms.join(", ")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let creates = env_number("BENCH_CREATES", 4096);
    let rounds = env_number("BENCH_ROUNDS", 3);
    let kills = env_number("BENCH_KILLS", 5);
    let clients: Vec<usize> = std::env::var("BENCH_CLIENTS")
        .map(|v| v.split(',').map(|c| c.trim().parse().expect("BENCH_CLIENTS: comma-separated numbers")).collect())
        .unwrap_or_else(|_| vec![16, 64]);

    let one = TugServer::start();
    let one_client = [kube_client(&one).await];
    let mut three = tug_cluster();
    let mut three_clients = Vec::new();
    for server in &three {
        three_clients.push(kube_client(server).await);
    }
    let mut etcd = start_etcd_cluster(3);
    let endpoints: Vec<String> = etcd.iter().map(|m| m.endpoint.clone()).collect();
    let etcd_client = connect_etcd(&endpoints).await;

    println!("## Replicated creates of ~1 KiB objects, {creates} per run, medians of {rounds} rounds\n");
    println!(
        "| clients | tug 1 server: creates/s, p99 ms | tug 3 servers: creates/s, p99 ms | etcd 3 members: puts/s, \
         p99 ms | tug 3 / etcd 3 | tug 3 / tug 1 |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let pids =
        [vec![one.pid()], three.iter().map(TugServer::pid).collect(), etcd.iter().map(|m| m.child.id()).collect()];
    let (mut cpu, mut writes) = ([Duration::ZERO; 3], 0);
    for clients in clients {
        let (mut single, mut triple, mut reference) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let prefix = format!("c{clients}r{round}");
            single.push(on_cpu(&pids[0], &mut cpu[0], tug_lean_creates(&one_client, &prefix, clients, creates)).await);
            triple
                .push(on_cpu(&pids[1], &mut cpu[1], tug_lean_creates(&three_clients, &prefix, clients, creates)).await);
            reference.push(on_cpu(&pids[2], &mut cpu[2], etcd_puts(&etcd_client, &prefix, clients, creates)).await);
            writes += creates / clients * clients;
        }
        let rate = |stats: &[load::Stats]| median(stats.iter().map(|s| s.per_second).collect());
        let p99 = |stats: &[load::Stats]| median(stats.iter().map(|s| s.p99_ms).collect());
        println!(
            "| {clients} | {:.0}, {:.1} | {:.0}, {:.1} | {:.0}, {:.1} | {:.2} | {:.2} |",
            rate(&single),
            p99(&single),
            rate(&triple),
            p99(&triple),
            rate(&reference),
            p99(&reference),
            rate(&triple) / rate(&reference),
            rate(&triple) / rate(&single),
        );
    }
    let per_thousand = |spent: Duration| 1e3 * spent.as_secs_f64() * 1e3 / writes as f64;
    println!(
        "\nServer CPU time (user + system, every member) per 1000 writes: tug 1 server {:.0} ms, tug 3 servers {:.0} \
         ms, etcd 3 members {:.0} ms.",
        per_thousand(cpu[0]),
        per_thousand(cpu[1]),
        per_thousand(cpu[2]),
    );
    println!("\nOne server: {}.", load::write_batching(&one_client).await);
    println!("Three servers (each member applies every write): {}.", load::write_batching(&three_clients).await);

    let (mut tug, mut agent, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..kills {
        let (direct, through_balancer) = tug_failover(&mut three, round).await;
        tug.push(direct);
        agent.push(through_balancer);
        reference.push(etcd_failover(&mut etcd, round).await);
    }
    println!("\n## Leader SIGKILL to the first accepted write, {kills} kills each (ms, sorted)\n");
    println!("| system | ms |");
    println!("| --- | --- |");
    println!("| tug, 3 servers (election timeout 500–1000 ms) | {} |", millis(&tug));
    println!(
        "| tug, the same kills, through an agent's load balancer that was using the leader | {} |",
        millis(&agent)
    );
    println!("| etcd 3.4, 3 members (defaults: election timeout 1000 ms) | {} |", millis(&reference));
}
