//! Cluster networking, measured on the real thing (root; iptables, the kernel's VXLAN, containerd):
//! - rule sync: 1,000 Services x 10 endpoints rendered and applied with iptables-restore in a fresh
//!   network namespace, with each backend (nft, legacy): the first (full) sync, then incremental syncs
//!   that move one endpoint of one Service, and a sync where nothing changed;
//! - DNS: queries per second and p99 latency of the embedded DNS server (in-process, on loopback, 16
//!   concurrent clients) for a cluster name and for an upstream name once cached (the upstream is a
//!   second hickory server of the benchmark's own);
//! - throughput: iperf3 between two pods on two nodes over VXLAN (the server's node on the host, an
//!   agent in a network namespace over a veth pair), beside iperf3 between the two hosts on that veth.
//!
//! Run: `cargo bench --bench networking` (as root; BENCH_SERVICES, BENCH_ENDPOINTS, BENCH_DNS_SECONDS,
//! BENCH_IPERF_SECONDS; TUG_TEST_BINARY for another build).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, Query};
use hickory_server::proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use common::agent::{Netns, TugAgent};
use common::{kubectl, kubectls, node, TugServer};
use tug::iptables::{Iptables, Ruleset};
use tug::proxy::{model, render};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------- rule sync

fn service(index: usize) -> Arc<Service> {
    let ip = format!("10.43.{}.{}", index / 250, index % 250 + 1);
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": format!("svc-{index}"), "namespace": "bench"},
            "spec": {"type": "NodePort", "clusterIP": ip, "clusterIPs": [ip],
                "ports": [{"name": "http", "port": 80, "nodePort": 30000 + index, "protocol": "TCP"}]}}))
        .expect("service"),
    )
}

fn slice(index: usize, endpoints: usize, generation: usize) -> Arc<EndpointSlice> {
    let addresses: Vec<_> = (0..endpoints)
        .map(|e| {
            let n = index * endpoints + e + generation;
            json!({"addresses": [format!("10.42.{}.{}", n / 250 % 250, n % 250 + 1)],
                   "nodeName": if e % 2 == 0 { "a" } else { "b" }, "conditions": {"ready": true}})
        })
        .collect();
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": format!("svc-{index}-x"), "namespace": "bench",
            "labels": {"kubernetes.io/service-name": format!("svc-{index}")}}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": addresses}))
        .expect("slice"),
    )
}

/// Enters a fresh network namespace (this thread, and the commands it starts, stay in it).
fn enter_fresh_netns(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).stderr(std::process::Stdio::null()).status();
    assert!(Command::new("ip").args(["netns", "add", name]).status().expect("ip netns").success());
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn rule_sync(runtime: &tokio::runtime::Runtime) {
    let (services_count, endpoints) = (env_count("BENCH_SERVICES", 1000), env_count("BENCH_ENDPOINTS", 10));
    let services: Vec<_> = (0..services_count).map(service).collect();
    let node = render::Node { name: "a".into(), cluster_cidr: "10.42.0.0/16".parse().expect("cidr") };
    println!("\n## Rule sync: {services_count} Services x {endpoints} endpoints (NodePort)");
    for iptables in Iptables::every_backend() {
        enter_fresh_netns("tugbench-sync");
        let mut slices: Vec<_> = (0..services_count).map(|i| slice(i, endpoints, 0)).collect();
        let started = Instant::now();
        let full = render::render(&node, &model::service_ports(&services, &slices));
        let rendered = started.elapsed();
        let payload = Ruleset::default().transition_to(&full);
        let started = Instant::now();
        runtime.block_on(iptables.restore(&payload)).expect("full restore");
        let applied = started.elapsed();
        println!(
            "{:>6}: full sync {} (render {}, iptables-restore {}; {} rules, {} chains, payload {} KiB)",
            iptables.name(),
            ms(rendered + applied),
            ms(rendered),
            ms(applied),
            full.rule_count(),
            payload.chains_written,
            payload.text().len() / 1024
        );
        let mut applied_set = full;
        let mut incremental = Vec::new();
        for round in 1..=10 {
            let changed = round * 37 % services_count;
            slices[changed] = slice(changed, endpoints, round * 1000);
            let started = Instant::now();
            let next = render::render(&node, &model::service_ports(&services, &slices));
            let payload = applied_set.transition_to(&next);
            runtime.block_on(iptables.restore(&payload)).expect("incremental restore");
            incremental.push(started.elapsed());
            applied_set = next;
        }
        incremental.sort();
        let started = Instant::now();
        let next = render::render(&node, &model::service_ports(&services, &slices));
        let payload = applied_set.transition_to(&next);
        runtime.block_on(iptables.restore(&payload)).expect("no-op restore");
        let noop = started.elapsed();
        println!(
            "{:>6}: incremental (one endpoint of one Service moved) p50 {} max {}; nothing changed {}",
            iptables.name(),
            ms(percentile(&incremental, 0.5)),
            ms(*incremental.last().expect("rounds")),
            ms(noop)
        );
    }
    let _ = Command::new("ip").args(["netns", "del", "tugbench-sync"]).status();
}

// ---------------------------------------------------------------- DNS

/// The benchmark's upstream: answers every A query with 192.0.2.1.
struct Upstream;

#[async_trait::async_trait]
impl hickory_server::server::RequestHandler for Upstream {
    async fn handle_request<R: hickory_server::server::ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &hickory_server::server::Request,
        mut handle: R,
    ) -> hickory_server::server::ResponseInfo {
        use hickory_server::proto::op::Metadata;
        use hickory_server::proto::rr::{rdata::A, RData, Record};
        let name = request.request_info().map(|i| Name::from(i.query.name().clone())).unwrap_or_default();
        let answer = Record::from_rdata(name, 300, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));
        let metadata = Metadata::response_from_request(&request.metadata);
        let builder = hickory_server::zone_handler::MessageResponseBuilder::from_message_request(request);
        let response = builder.build(metadata, [&answer], [], [], []);
        handle.send_response(response).await.expect("upstream reply")
    }
}

async fn serve(handler: impl hickory_server::server::RequestHandler, address: SocketAddr) {
    let mut server = hickory_server::Server::new(handler);
    server.register_socket(tokio::net::UdpSocket::bind(address).await.expect("bind dns"));
    let _ = server.block_until_done().await;
}

/// `clients` concurrent clients asking `name` for `seconds`: (queries per second, p50, p99).
async fn load(server: SocketAddr, name: &str, clients: usize, seconds: u64) -> (f64, Duration, Duration) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let name = Name::from_ascii(name).expect("name");
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
            socket.connect(server).await.expect("connect");
            let mut latencies = Vec::new();
            let mut buffer = [0u8; 1500];
            let mut id = client as u16 * 1000;
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                let mut query = Message::query();
                query.metadata.id = id;
                query.metadata.recursion_desired = true;
                query.add_query(Query::query(name.clone(), RecordType::A));
                let bytes = query.to_vec().expect("encode");
                let started = Instant::now();
                socket.send(&bytes).await.expect("send");
                let received = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer)).await;
                let Ok(Ok(length)) = received else { continue };
                let answer = Message::from_vec(&buffer[..length]).expect("decode");
                assert!(!answer.answers.is_empty(), "no answer for {name}");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    all.sort();
    (all.len() as f64 / seconds as f64, percentile(&all, 0.5), percentile(&all, 0.99))
}

fn dns(runtime: &tokio::runtime::Runtime) {
    let seconds = env_count("BENCH_DNS_SECONDS", 5) as u64;
    let services: Vec<_> = (0..1000).map(service).collect();
    let slices: Vec<_> = (0..1000).map(|i| slice(i, 10, 0)).collect();
    let zone =
        tug::dns::zone::Zone::build("cluster.local", vec!["10.43.0.0/16".parse().expect("cidr")], &services, &slices);
    let upstream_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 53);
    runtime.block_on(async {
        tokio::spawn(serve(Upstream, SocketAddr::new(upstream_ip, 53)));
        let handler = tug::dns::Handler {
            zone: Arc::new(RwLock::new(Some(Arc::new(zone)))),
            upstream: tug::dns::resolver(&[upstream_ip]),
        };
        tokio::spawn(serve(handler, server));
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!("\n## DNS: 16 clients, {seconds} s each, 1,000 Services in the zone");
        for (what, name) in
            [("cluster name", "svc-500.bench.svc.cluster.local."), ("upstream name, cached", "www.example.org.")]
        {
            let (qps, p50, p99) = load(server, name, 16, seconds).await;
            println!("{what:>22}: {qps:.0} queries/s, p50 {} p99 {}", ms(p50), ms(p99));
        }
    });
}

// ---------------------------------------------------------------- throughput

fn iperf(netns_of_server: &str, bind: &str, client_netns: Option<&str>, seconds: usize) -> f64 {
    let mut server = Command::new("nsenter");
    server.arg(format!("--net={netns_of_server}")).args(["--", "iperf3", "-s", "-1", "-B", bind]);
    let mut server = server.stdout(std::process::Stdio::null()).spawn().expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(500));
    let mut client = Command::new("nsenter");
    if let Some(netns) = client_netns {
        client.arg(format!("--net={netns}"));
    }
    let output =
        client.args(["--", "iperf3", "-c", bind, "-t", &seconds.to_string(), "-J"]).output().expect("iperf3 client");
    let _ = server.wait();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("iperf3 json");
    report["end"]["sum_received"]["bits_per_second"].as_f64().expect("bits per second") / 1e9
}

/// The host PID of the process whose command line is exactly `command`.
fn pid_of(command: &str) -> u32 {
    let output = Command::new("pgrep").args(["-x", "-f", command]).output().expect("pgrep");
    String::from_utf8_lossy(&output.stdout).lines().next().and_then(|l| l.trim().parse().ok()).expect("pid")
}

fn throughput() {
    let seconds = env_count("BENCH_IPERF_SECONDS", 10);
    let netns = Netns::create("tugbenchnet", "10.254.0.1", "10.254.0.2");
    let flags = ["--bind-address", "10.254.0.1", "--node-name", "a", "--node-ip", "10.254.0.1"];
    let server = TugServer::start_with_agent(&flags, node::images());
    let token = std::fs::read_to_string(server.data_dir().join("server/token")).expect("token");
    let _b = TugAgent::start(&server, &netns, "b", &["--token", token.trim()], node::images());
    let bin = &kubectls()[0];
    for (pod, node_name, seconds_arg) in [("iperf-a", "a", "36001"), ("iperf-b", "b", "36002")] {
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}}}\nspec:\n  nodeName: {node_name}\n  \
             containers: [{{name: c, image: tug.local/busybox:1, command: [sleep, '{seconds_arg}']}}]\n"
        );
        kubectl(bin, &server, &["apply", "-f", "-"], Some(&manifest)).ok();
    }
    let running = common::within(Duration::from_secs(120), || {
        kubectl(bin, &server, &["get", "pods", "-o", "jsonpath={.items[*].status.phase}"], None).stdout
            == "Running Running"
    });
    assert!(running, "the iperf pods do not run");
    let pod_b_ip = kubectl(bin, &server, &["get", "pod", "iperf-b", "-o", "jsonpath={.status.podIP}"], None).stdout;
    let (pod_a, pod_b) = (pid_of("sleep 36001"), pid_of("sleep 36002"));
    let host = iperf(&format!("/run/netns/{}", netns.name), &netns.inside_ip, None, seconds);
    let pods = iperf(&format!("/proc/{pod_b}/ns/net"), &pod_b_ip, Some(&format!("/proc/{pod_a}/ns/net")), seconds);
    println!("\n## Throughput, one TCP stream for {seconds} s over a veth pair");
    println!("host to host: {host:.2} Gbit/s");
    println!("pod to pod across nodes (VXLAN): {pods:.2} Gbit/s ({:.2}x of host to host)", pods / host);
}

fn main() {
    assert!(nix::unistd::geteuid().is_root(), "the networking benchmark needs root");
    throughput();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    dns(&runtime);
    rule_sync(&runtime);
}
