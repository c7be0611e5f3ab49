//! Agents outlive their server (root, containerd, `ip netns`): three servers on the host end of a veth
//! pair, each listed in the `kubernetes` Endpoints; an agent in the namespace joins through the first.
//! When that server is killed, the agent keeps its node Ready and runs a new pod through the others;
//! the dead server leaves the Endpoints once its lease lapses; the agent restarted while its
//! `--server` is still down rejoins through the servers it learned; when the server it uses hangs
//! (takes connections, answers nothing) the agent moves to another; a server stopping cleanly leaves
//! the Endpoints within a renewal period.

mod common;

use std::time::Duration;

use common::agent::{Netns, TugAgent};
use common::{eventually_within, jsonpath, kubectl, kubectls, node, TugServer};

const HOST: &str = "10.251.1.1";

/// The `kubernetes` Endpoints' `ip:port`s, sorted, as `server` serves them.
fn api_endpoints(server: &TugServer) -> Vec<String> {
    let path = r#"{range .subsets[*]}{range .addresses[*]}{.ip}{" "}{end}{"|"}{.ports[0].port}{"\n"}{end}"#;
    let text = jsonpath(&kubectls()[0], server, &["endpoints", "kubernetes"], path);
    let mut endpoints: Vec<String> = text
        .lines()
        .filter_map(|line| line.split_once('|'))
        .flat_map(|(ips, port)| ips.split_whitespace().map(move |ip| format!("{ip}:{port}")).collect::<Vec<_>>())
        .collect();
    endpoints.sort();
    endpoints
}

fn lease_renewed(server: &TugServer, name: &str) -> String {
    let path = "jsonpath={.spec.renewTime}";
    kubectl(&kubectls()[0], server, &["get", "lease", "-n", "kube-node-lease", name, "-o", path], None).stdout
}

/// The server the agent's connections go to: the one most of the connections established from its
/// namespace lead to.
fn server_in_use(netns: &Netns, servers: &[TugServer]) -> usize {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &netns.name, "ss", "-Htn", "state", "established"])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&output.stdout);
    let peers: Vec<&str> = text.lines().filter_map(|line| line.split_whitespace().nth(3)).collect();
    let connections = |i: &usize| peers.iter().filter(|peer| **peer == format!("{HOST}:{}", servers[*i].port)).count();
    let in_use = (0..servers.len()).max_by_key(connections).expect("servers");
    assert!(connections(&in_use) > 0, "the agent has no connection to any server: {text}");
    in_use
}

#[test]
fn an_agent_fails_over_to_another_server_and_rejoins_through_the_servers_it_learned() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let netns = Netns::create("tugfail", HOST, "10.251.1.2");
    let listen = ["--bind-address", HOST, "--advertise-address", HOST];
    let mut servers = vec![TugServer::start_with(&listen)];
    let token = std::fs::read_to_string(servers[0].data_dir().join("server/token")).expect("token");
    for _ in 0..2 {
        let url = format!("https://{HOST}:{}", servers[0].port);
        let mut flags = vec!["--server", &url, "--token", token.trim()];
        flags.extend(listen);
        servers.push(TugServer::start_with(&flags));
    }
    let mut all: Vec<String> = servers.iter().map(|s| format!("{HOST}:{}", s.port)).collect();
    all.sort();
    eventually_within(Duration::from_secs(20), "every server in the kubernetes endpoints", || {
        api_endpoints(&servers[2]) == all
    });

    let bin = &kubectls()[0];
    let mut agent = TugAgent::start(&servers[0], &netns, "node-b", &["--token", token.trim()], node::images());
    eventually_within(Duration::from_secs(90), "node-b is Ready", || common::node_ready(&servers[1], "node-b"));
    let learned = agent.dir.path().join("agent/etc/tug-agent-load-balancer.json");
    eventually_within(Duration::from_secs(10), "the agent keeps the servers' addresses", || {
        let text = std::fs::read_to_string(&learned).unwrap_or_default();
        all.iter().all(|server| text.contains(server.as_str()))
    });

    // The agent's server dies: heartbeats and a new pod go through another one.
    servers[0].kill();
    let renewed = lease_renewed(&servers[1], "node-b");
    eventually_within(Duration::from_secs(30), "node-b's lease is renewed through another server", || {
        lease_renewed(&servers[1], "node-b") != renewed
    });
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: after-failover\nspec:\n  nodeName: node-b\n  containers:\n  - name: app\n    image: tug.local/busybox:1\n    command: [sleep, '3600']\n";
    kubectl(bin, &servers[1], &["apply", "-f", "-"], Some(pod)).ok();
    let running = common::within(Duration::from_secs(60), || {
        jsonpath(bin, &servers[1], &["pod", "after-failover"], "{.status.phase}") == "Running"
    });
    assert!(running, "the pod does not run after the failover; agent log:\n{}", agent.log());
    assert!(common::node_ready(&servers[2], "node-b"), "node-b stays Ready");
    let remaining: Vec<String> = all.iter().filter(|s| **s != format!("{HOST}:{}", servers[0].port)).cloned().collect();
    eventually_within(Duration::from_secs(40), "the dead server leaves the endpoints", || {
        api_endpoints(&servers[1]) == remaining
    });

    // Restarted while its --server is still down, the agent rejoins through a server it learned.
    let renewed = lease_renewed(&servers[1], "node-b");
    agent.restart(&servers[0], &netns, &["--token", token.trim()]);
    eventually_within(Duration::from_secs(60), "the restarted agent renews its lease", || {
        lease_renewed(&servers[1], "node-b") != renewed
    });
    assert!(agent.log().matches("joined the cluster").count() >= 2, "it joined again:\n{}", agent.log());

    // Back, the first server rejoins the endpoints; a server stopping cleanly leaves them at once.
    servers[0].restart();
    eventually_within(Duration::from_secs(20), "the restarted server is back in the endpoints", || {
        api_endpoints(&servers[1]) == all
    });
    // A server that takes connections but answers nothing (hung, or cut off from the others and not
    // ready): the agent's readiness check moves it to another one.
    let hung = server_in_use(&netns, &servers);
    let answering = (hung + 1) % servers.len();
    let renewed = lease_renewed(&servers[answering], "node-b");
    let hung_pid = nix::unistd::Pid::from_raw(servers[hung].pid() as i32);
    nix::sys::signal::kill(hung_pid, nix::sys::signal::Signal::SIGSTOP).expect("stop the server");
    let moved = common::within(Duration::from_secs(40), || {
        let now = lease_renewed(&servers[answering], "node-b");
        !now.is_empty() && now != renewed
    });
    nix::sys::signal::kill(hung_pid, nix::sys::signal::Signal::SIGCONT).expect("continue the server");
    assert!(moved, "node-b's lease is not renewed while its server hangs; agent log:\n{}", agent.log());
    assert_ne!(server_in_use(&netns, &servers), hung, "the agent still uses the server that hung");

    servers[2].terminate();
    let mut left: Vec<String> = servers[..2].iter().map(|s| format!("{HOST}:{}", s.port)).collect();
    left.sort();
    // At once by itself, but another server's round in flight may put it back until its next one.
    eventually_within(Duration::from_secs(10), "a stopped server leaves the endpoints", || {
        api_endpoints(&servers[1]) == left
    });
}
