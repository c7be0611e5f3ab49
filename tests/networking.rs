//! Cluster networking on the real thing (root, containerd, iptables, the kernel's VXLAN): two nodes on
//! one machine — the server's own node on the host, an agent in a network namespace the test creates,
//! joined by a veth pair — running pods that reach each other by pod IP (VXLAN and host-gw), by
//! ClusterIP and by cluster DNS name, other names forwarded to the nodes' resolvers; NodePorts and a LoadBalancer Service answering on the nodes'
//! addresses; endpoints following scaling and readiness; NetworkPolicies blocking and allowing by
//! namespace; and nothing of tug left on the hosts after `tug network-cleanup`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::agent::{Netns, TugAgent};
use common::{eventually_within, kubectl, kubectls, node, server_binary, TugServer};

const WAIT: Duration = Duration::from_secs(90);

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: tug.local/busybox:1
        command: [sh, -c, 'mkdir -p /www; hostname > /www/index.html; touch /tmp/ready; exec httpd -f -p 8080 -h /www']
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

const DENY_WEB: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-web}\n\
spec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n";

const ALLOW_OUTSIDE: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-outside}\n\
spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: outside}}\n";

/// Two nodes: `a` (the server's, on the host at `netns.host_ip`) and `b` (an agent in `netns`), both
/// with `--resolv-conf` naming a dnsmasq on the host's veth address as the nodes' resolver.
struct Cluster {
    server: TugServer,
    b: TugAgent,
    netns: Netns,
    bin: std::path::PathBuf,
    upstream: std::process::Child,
    _resolv_conf: tempfile::NamedTempFile,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.upstream.kill();
        let _ = self.upstream.wait();
    }
}

/// The name the upstream resolver knows, and its address.
const UPSTREAM_NAME: &str = "upstream.test";
const UPSTREAM_ADDRESS: &str = "192.0.2.77";

/// dnsmasq answering `UPSTREAM_NAME` on `address`:53 (and refusing to forward anything).
fn upstream_dns(address: &str) -> std::process::Child {
    Command::new("dnsmasq")
        .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--bind-interfaces"])
        .args(["--user=root", "--pid-file=", "--port=53"])
        .arg(format!("--listen-address={address}"))
        .arg(format!("--address=/{UPSTREAM_NAME}/{UPSTREAM_ADDRESS}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq (scripts/setup.sh installs dnsmasq-base)")
}

impl Cluster {
    fn start(name: &str, subnet: u8, backend: &str) -> Cluster {
        let netns = Netns::create(name, &format!("10.{subnet}.0.1"), &format!("10.{subnet}.0.2"));
        let host_ip = netns.host_ip.clone();
        let upstream = upstream_dns(&host_ip);
        let resolv_conf = tempfile::NamedTempFile::new().expect("resolv.conf");
        std::fs::write(resolv_conf.path(), format!("nameserver {host_ip}\n")).expect("write resolv.conf");
        let resolv = resolv_conf.path().to_str().expect("path").to_string();
        let flags = [
            "--bind-address",
            &host_ip,
            "--node-name",
            "a",
            "--node-ip",
            &host_ip,
            "--network-backend",
            backend,
            "--resolv-conf",
            &resolv,
        ];
        let server = TugServer::start_with_agent(&flags, node::images());
        let token = std::fs::read_to_string(server.data_dir().join("server/token")).expect("token");
        let agent_flags = ["--token", token.trim(), "--resolv-conf", &resolv];
        let b = TugAgent::start(&server, &netns, "b", &agent_flags, node::images());
        let bin = kubectls()[0].clone();
        let cluster = Cluster { server, b, netns, bin, upstream, _resolv_conf: resolv_conf };
        for node in ["a", "b"] {
            let ready = common::within(WAIT, || {
                cluster.get(&["node", node], r#"{.status.conditions[?(@.type=="Ready")].status}"#) == "True"
            });
            assert!(
                ready,
                "node {node} is not Ready; agent log:\n{}\nserver log:\n{}",
                cluster.b.log(),
                cluster.server.log()
            );
        }
        cluster
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> common::Run {
        kubectl(&self.bin, &self.server, args, stdin)
    }

    /// `kubectl get <object…> -o jsonpath=<path>`; empty when it fails (the object is not there yet).
    fn get(&self, object: &[&str], path: &str) -> String {
        let output = format!("jsonpath={path}");
        let args: Vec<&str> = ["get"].into_iter().chain(object.iter().copied()).chain(["-o", &output]).collect();
        self.kubectl(&args, None).stdout
    }

    /// A pod that sleeps on `node`, Running.
    fn client_on(&self, name: &str, node: &str) {
        self.client_on_in(name, node, "default");
    }

    fn client_on_in(&self, name: &str, node: &str, namespace: &str) {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{role: client}}}}\n\
             spec:\n  nodeName: {node}\n  containers: [{{name: c, image: tug.local/busybox:1, command: [sleep, '3600']}}]\n"
        );
        self.kubectl(&["apply", "-f", "-"], Some(&pod)).ok();
        eventually_within(WAIT, &format!("{name} runs"), || {
            self.get(&["pod", "-n", namespace, name], "{.status.phase}") == "Running"
        });
    }

    /// What `GET /` to `host:port` answers inside `pod` (the last line: the serving pod's name).
    fn fetch_in(&self, pod: &str, host: &str, port: u16) -> String {
        self.fetch_in_namespace(pod, "default", host, port)
    }

    fn fetch_in_namespace(&self, pod: &str, namespace: &str, host: &str, port: u16) -> String {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} | tail -n 1");
        self.kubectl(&["exec", "-n", namespace, pod, "--", "sh", "-c", &script], None).stdout.trim().to_string()
    }

    /// The names of the web pods that are Ready.
    fn ready_web_pods(&self) -> BTreeSet<String> {
        let path = r#"{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#;
        let listed = self.get(&["pods", "-l", "app=web"], path);
        listed.split_whitespace().filter_map(|p| p.strip_suffix("=True")).map(str::to_string).collect()
    }

    fn pod_ip(&self, pod: &str) -> String {
        self.get(&["pod", pod], "{.status.podIP}")
    }

    fn web_pod_on(&self, node: &str) -> String {
        let path = format!("{{.items[?(@.spec.nodeName==\"{node}\")].metadata.name}}");
        self.get(&["pods", "-l", "app=web"], &path)
    }
}

/// `GET /` to `address` from the test (the host); the answer's last line.
fn fetch(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.lines().last().map(|l| l.trim().to_string())
}

/// Every distinct answer of `tries` calls.
fn answers(tries: usize, mut ask: impl FnMut() -> Option<String>) -> BTreeSet<String> {
    (0..tries).filter_map(|_| ask()).filter(|a| !a.is_empty()).collect()
}

fn tug_rules(netns: Option<&str>) -> String {
    let mut command = match netns {
        Some(name) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", name, "iptables-save"]);
            c
        }
        None => Command::new("iptables-save"),
    };
    let output = command.output().expect("iptables-save");
    String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.contains("TUG-")).collect::<Vec<_>>().join("\n")
}

/// Runs `tug network-cleanup` (in `netns` if given) and checks that no chain, device or route of
/// tug's is left.
fn clean_up_and_check(netns: Option<&str>) {
    let mut command = Command::new("nsenter");
    if let Some(name) = netns {
        command.arg(format!("--net=/run/netns/{name}"));
    }
    let output = command.arg("--").arg(server_binary()).arg("network-cleanup").output().expect("network-cleanup");
    assert!(output.status.success(), "network-cleanup: {}", String::from_utf8_lossy(&output.stderr));
    let ip = |args: &[&str]| {
        let mut command = Command::new("ip");
        if let Some(name) = netns {
            command.args(["-n", name]);
        }
        let output = command.args(args).output().expect("ip");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    assert_eq!(tug_rules(netns), "", "tug's iptables rules are left in {netns:?}");
    assert!(!ip(&["link", "show", "tug.1"]).0, "the VXLAN device is left in {netns:?}");
    assert!(!ip(&["link", "show", "cni0"]).0, "the bridge is left in {netns:?}");
    assert_eq!(ip(&["route", "show", "proto", "122"]).1, "", "tug's routes are left in {netns:?}");
}

#[test]
fn pods_services_and_names_work_across_two_nodes_over_vxlan() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let mut cluster = Cluster::start("tugnet", 252, "vxlan");
    cluster.kubectl(&["apply", "-f", "-"], Some(WEB)).ok();
    cluster.client_on("client", "a");
    eventually_within(WAIT, "both web pods are ready", || cluster.ready_web_pods().len() == 2);
    let (on_a, on_b) = (cluster.web_pod_on("a"), cluster.web_pod_on("b"));
    assert!(!on_a.is_empty() && !on_b.is_empty(), "one web pod per node: {on_a:?} {on_b:?}");

    // Pod to pod by IP, both ways across the overlay.
    let ip_b = cluster.pod_ip(&on_b);
    eventually_within(WAIT, "the client on a reaches the pod on b by IP", || {
        cluster.fetch_in("client", &ip_b, 8080) == on_b
    });
    assert_eq!(cluster.fetch_in(&on_b, &cluster.pod_ip(&on_a), 8080), on_a, "b reaches a by IP");

    // By ClusterIP and by name: both pods answer.
    let cluster_ip = cluster.get(&["svc", "web"], "{.spec.clusterIP}");
    let both = BTreeSet::from([on_a.clone(), on_b.clone()]);
    eventually_within(WAIT, "both pods answer on the cluster IP", || {
        answers(12, || Some(cluster.fetch_in("client", &cluster_ip, 80))) == both
    });
    assert!(both.contains(&cluster.fetch_in(&on_b, "web", 80)), "the short name resolves on b");
    let by_name = answers(12, || Some(cluster.fetch_in("client", "web.default.svc.cluster.local", 80)));
    assert_eq!(by_name, both, "the full name resolves to the service");

    // Other names are forwarded to the nodes' resolvers (--resolv-conf), on both nodes.
    for pod in ["client", on_b.as_str()] {
        let answer = cluster.kubectl(&["exec", pod, "--", "nslookup", UPSTREAM_NAME], None).stdout;
        assert!(answer.contains(UPSTREAM_ADDRESS), "{pod} resolves {UPSTREAM_NAME} upstream: {answer}");
    }

    // NodePort on both nodes' addresses, from the host.
    let node_port: u16 = cluster.get(&["svc", "web"], "{.spec.ports[0].nodePort}").parse().expect("nodePort");
    for node_ip in [&cluster.netns.host_ip, &cluster.netns.inside_ip] {
        let address = SocketAddr::new(node_ip.parse().unwrap(), node_port);
        eventually_within(WAIT, &format!("the node port answers on {address}"), || {
            answers(12, || fetch(address)) == both
        });
    }

    // LoadBalancer: the nodes' addresses as ingress, answering on the service's port.
    cluster.kubectl(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#], None).ok();
    eventually_within(WAIT, "the load balancer has both nodes' addresses", || {
        let ingress = cluster.get(&["svc", "web"], "{.status.loadBalancer.ingress[*].ip}");
        ingress.split_whitespace().collect::<BTreeSet<_>>()
            == BTreeSet::from([cluster.netns.host_ip.as_str(), cluster.netns.inside_ip.as_str()])
    });
    let lb = SocketAddr::new(cluster.netns.inside_ip.parse().unwrap(), 80);
    eventually_within(WAIT, "the load balancer answers", || answers(12, || fetch(lb)) == both);

    // An unready pod gets no more traffic.
    cluster.kubectl(&["exec", &on_b, "--", "rm", "/tmp/ready"], None).ok();
    eventually_within(WAIT, "the unready pod is out of the endpoints", || cluster.ready_web_pods().len() == 1);
    eventually_within(WAIT, "only the ready pod answers", || {
        answers(12, || Some(cluster.fetch_in("client", &cluster_ip, 80))) == BTreeSet::from([on_a.clone()])
    });
    cluster.kubectl(&["exec", &on_b, "--", "touch", "/tmp/ready"], None).ok();

    // Scaling changes which pods answer.
    for replicas in [3, 1] {
        cluster.kubectl(&["scale", "deployment", "web", &format!("--replicas={replicas}")], None).ok();
        eventually_within(WAIT, &format!("{replicas} pods are ready"), || {
            let pods = cluster.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"], None).stdout;
            pods.lines().count() == replicas && cluster.ready_web_pods().len() == replicas
        });
        let ready = cluster.ready_web_pods();
        eventually_within(WAIT, &format!("exactly the {replicas} ready pods answer"), || {
            answers(5 * replicas + 5, || Some(cluster.fetch_in("client", &cluster_ip, 80))) == ready
        });
    }

    // NetworkPolicy: denying ingress to the web pod blocks clients of any namespace; allowing the
    // namespace `outside` lets its pods through, and only them.
    let web = cluster.ready_web_pods().into_iter().next().expect("a web pod");
    let web_ip = cluster.pod_ip(&web);
    cluster.kubectl(&["create", "namespace", "outside"], None).ok();
    cluster.client_on_in("stranger", "b", "outside");
    let reaches = |client: &str, namespace: &str| cluster.fetch_in_namespace(client, namespace, &web_ip, 8080) == web;
    assert!(reaches("client", "default") && reaches("stranger", "outside"), "open before any policy");
    cluster.kubectl(&["apply", "-f", "-"], Some(DENY_WEB)).ok();
    eventually_within(WAIT, "the policy blocks both clients", || {
        !reaches("client", "default") && !reaches("stranger", "outside")
    });
    cluster.kubectl(&["apply", "-f", "-"], Some(ALLOW_OUTSIDE)).ok();
    eventually_within(WAIT, "the namespace outside gets through", || reaches("stranger", "outside"));
    assert!(!reaches("client", "default"), "the default namespace is still blocked");
    cluster.kubectl(&["delete", "networkpolicy", "deny-web", "allow-outside"], None).ok();
    eventually_within(WAIT, "without policies the client gets through again", || reaches("client", "default"));

    // Deleting the service removes its rules on both nodes.
    assert!(tug_rules(None).contains("default/web"));
    cluster.kubectl(&["delete", "svc", "web"], None).ok();
    eventually_within(WAIT, "the service's rules are gone on both nodes", || {
        !tug_rules(None).contains("default/web") && !tug_rules(Some(&cluster.netns.name)).contains("default/web")
    });

    // After the nodes stop, cleaning up leaves nothing of tug's on either host.
    cluster.b.stop();
    clean_up_and_check(Some(&cluster.netns.name));
    cluster.server.terminate();
    clean_up_and_check(None);
}

#[test]
fn pods_reach_each_other_across_nodes_over_host_gw_routes() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let mut cluster = Cluster::start("tuggw", 253, "host-gw");
    cluster.client_on("on-a", "a");
    cluster.client_on("on-b", "b");
    let server = "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www";
    cluster.kubectl(&["exec", "on-b", "--", "sh", "-c", &format!("{server} &")], None);
    let ip_b = cluster.pod_ip("on-b");
    eventually_within(WAIT, "the pod on a reaches the pod on b by IP", || {
        cluster.fetch_in("on-a", &ip_b, 8080) == "on-b"
    });
    let routes = Command::new("ip").args(["route", "show", "proto", "122"]).output().expect("ip route");
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains(&format!("10.42.1.0/24 via {}", cluster.netns.inside_ip)) && !routes.contains("tug.1"),
        "host-gw routes via the peer's address: {routes}"
    );
    cluster.b.stop();
    cluster.server.terminate();
    clean_up_and_check(None);
}
